"""What connectors may reach: the operator's limits on folders and hosts.

A :class:`ConnectorPolicy` travels in every :class:`~modelbus.connectors.base.ConnectorContext`.
The listener manager builds one from the server's settings and passes it explicitly where
it builds a context itself; for the contexts a listener runtime builds, the manager makes it
the *current* policy while the runtime is constructed (:func:`applied`), and
``ConnectorContext`` takes the current one by default (:func:`current`). Outside any
:func:`applied` block (a library user, a test building connectors directly) the policy is
the empty one: no configured roots, only the data-directory rule of ``dir://`` applies.

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

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

from modelbus.connectors.egress import Egress

__all__ = ["ConnectorPolicy", "applied", "current"]


@dataclass(frozen=True, kw_only=True, slots=True)
class ConnectorPolicy:
    """The operator's limits on what connectors reach (see the module docstring)."""

    dir_roots: tuple[Path, ...] | None = None
    egress: Egress | None = None


_CURRENT: ContextVar[ConnectorPolicy | None] = ContextVar("modelbus_connector_policy", default=None)


def current() -> ConnectorPolicy:
    """The policy of the innermost :func:`applied` block (the empty policy outside any)."""
    return _CURRENT.get() or ConnectorPolicy()


@contextmanager
def applied(policy: ConnectorPolicy) -> Iterator[ConnectorPolicy]:
    """Make ``policy`` the current one inside the block (contexts built there take it)."""
    token = _CURRENT.set(policy)
    try:
        yield policy
    finally:
        _CURRENT.reset(token)
