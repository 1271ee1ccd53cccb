"""Event listeners: definitions, the delivery runtime of each listener, and their manager."""
