"""modelbus: event-driven model serving.

Every model version gets an HTTP API the moment it is published; event listeners deliver
every broker message to a model version with verified delivery, retries, dead-letters and
result publishing.
"""

__version__ = "0.1.0"

from modelbus.client import AsyncClient, Client

__all__ = ["AsyncClient", "Client", "__version__"]
