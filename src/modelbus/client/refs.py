"""Model references: ``owner/name@spec``, as callers write them.

The one grammar of a reference, shared by the SDK, the CLI and the server (which resolves
the spec in its registry: :mod:`modelbus.registry.versioning`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from modelbus.errors import InvalidInput

__all__ = ["ModelRef", "is_name"]

_NAME = r"[a-zA-Z0-9][\w.-]*"
_REF = re.compile(rf"^(?P<owner>{_NAME})/(?P<name>{_NAME})(?:@(?P<spec>\S+))?$")


def is_name(text: object) -> bool:
    """Whether ``text`` is an owner or a model name as references write them (letters,
    digits, '_', '.' or '-', starting with a letter or digit)."""
    return isinstance(text, str) and re.fullmatch(_NAME, text) is not None


@dataclass(frozen=True, slots=True)
class ModelRef:
    """``owner/name@spec``: which model, and which version spec (``latest`` when omitted).

    ``spec`` is a semver (``1.2.3``), a wildcard (``1.2.*``, ``1.*``), ``latest``, or a build
    hash (``sha256:...`` or a hex prefix) for unpublished builds.
    """

    owner: str
    name: str
    spec: str = "latest"

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        """Parse ``owner/name`` or ``owner/name@spec``; raises :class:`InvalidInput`."""
        m = _REF.match(text.strip())
        if not m:
            raise InvalidInput(f"not a model reference: {text!r} (expected OWNER/NAME[@SPEC])")
        return cls(m["owner"], m["name"], m["spec"] or "latest")

    def __str__(self) -> str:
        return f"{self.owner}/{self.name}@{self.spec}"
