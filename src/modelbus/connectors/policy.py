"""What connectors may reach: the operator's limits on folders and hosts.

A :class:`ConnectorPolicy` travels in every :class:`~modelbus.connectors.base.ConnectorContext`.
The listener manager builds one from the server's settings and passes it to every context
it builds and to every listener runtime (``ListenerRuntime(..., policy=...)``), which puts it
in the contexts of its connectors. A context built without one (a library user, a test
building connectors directly) has the empty policy: no configured roots, only the
data-directory rule of ``dir://`` applies.

``dir_roots``: the folders ``dir://`` sources and sinks must lie in (a folder equal to a
root or inside one); None: no roots configured. Whatever the roots, a folder is never the
data directory, never a folder holding it, and never inside it unless it is inside a root
that is itself inside the data directory (an operator's explicit choice, as the demo's
``DATA_DIR/inbox``). See :func:`modelbus.connectors.directory.check_folder`.

``egress``: where connectors may connect (:class:`~modelbus.connectors.egress.Egress`);
None: anywhere (no policy). Checked for every URL naming hosts when its connector is made
(:func:`modelbus.connectors.make_source`, ``make_sink``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from modelbus.connectors.egress import Egress

__all__ = ["ConnectorPolicy"]


@dataclass(frozen=True, kw_only=True, slots=True)
class ConnectorPolicy:
    """The operator's limits on what connectors reach (see the module docstring)."""

    dir_roots: tuple[Path, ...] | None = None
    egress: Egress | None = None
