"""The model-facing side of modelbus: what a Python model may import.

Standard library only, so it runs inside any model's own virtualenv. A model needs nothing
from here to be served; these are optional helpers:

- :class:`PermanentError`: raise it when retrying cannot help (bad input, unsupported
  document); the listener runtime dead-letters the message at once.
- :class:`Context`: passed as ``context`` to ``apply`` when it declares a parameter of that
  name; ``apply_batch`` gets a list of them, one per input.

One call may carry many inputs. Without ``apply_batch`` the runner calls ``apply`` once per
input, in order, and an exception is the error of that input alone. ``apply_batch`` returns
one result per input; an exception instance in that list is the error of its input alone
(raising fails the whole batch).

``python -m modelbus_runner ENTRYPOINT`` serves a model over docs/runner-protocol.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Context", "PermanentError"]


class PermanentError(Exception):
    """A model error that retrying cannot fix; the message is dead-lettered at once."""

    permanent = True


@dataclass(frozen=True, slots=True)
class Context:
    """What the runner knows about one input besides its value.

    ``content_type`` is ``json``, ``text`` or ``binary``; ``mime`` the MIME type a binary
    input arrived with, if any; ``attributes`` this input's attributes (the message
    attributes of its event, such as its id and trace context, or nothing for a plain HTTP
    call): the call's attributes with the input's own merged over them.
    """

    content_type: Literal["json", "text", "binary"]
    mime: str | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)
