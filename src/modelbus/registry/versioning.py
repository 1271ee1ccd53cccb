"""Version numbers, version specs and build-hash references.

A published version is ``MAJOR.MINOR.PATCH`` (:class:`Version`). Callers name one with a
:class:`VersionSpec`: an exact version (``1.2.3``), a wildcard (``1.2.*``, ``1.*``) or
``latest`` (also ``*``); the best match is the highest matching version. An unpublished build
is named by its content hash (:class:`HashRef`): ``sha256:<hex>`` or a bare hex prefix of at
least :data:`MIN_HASH_PREFIX` characters. :func:`parse_ref` tells the two apart.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from modelbus.errors import VersionSpecError

Bump = Literal["major", "minor", "patch"]
BUMPS: tuple[Bump, ...] = ("major", "minor", "patch")

MIN_HASH_PREFIX = 8
HASH_PREFIX = "sha256:"

# At most nine digits: every version number fits the store's integer columns (and Python
# refuses to convert numbers of thousands of digits).
_NUMBER = r"(0|[1-9][0-9]{0,8})"
_VERSION = re.compile(rf"^{_NUMBER}\.{_NUMBER}\.{_NUMBER}$")
_MINOR_WILDCARD = re.compile(rf"^{_NUMBER}\.{_NUMBER}\.\*$")
_MAJOR_WILDCARD = re.compile(rf"^{_NUMBER}\.\*$")
_HEX = re.compile(r"^[0-9a-f]+$")

SPEC_FORMS = (
    "MAJOR.MINOR.PATCH (1.2.3; numbers of at most nine digits), 1.2.*, 1.*, latest, "
    "or a build hash (sha256:<hex>)"
)
VERSION_FORM = (
    "MAJOR.MINOR.PATCH with numbers of at most nine digits and no leading zeros, like 1.2.3"
)


@dataclass(frozen=True, order=True, slots=True)
class Version:
    """A semantic version ``MAJOR.MINOR.PATCH``; instances order numerically."""

    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str) -> Version:
        """Parse ``1.2.3``; raises :class:`VersionSpecError` saying what is accepted."""
        m = _VERSION.match(text.strip())
        if not m:
            raise VersionSpecError(f"not a version: {text!r} (expected {VERSION_FORM})")
        return cls(int(m[1]), int(m[2]), int(m[3]))

    def bump(self, part: Bump) -> Version:
        """The next version: ``major`` -> X+1.0.0, ``minor`` -> X.Y+1.0, ``patch`` -> X.Y.Z+1."""
        if part == "major":
            return Version(self.major + 1, 0, 0)
        if part == "minor":
            return Version(self.major, self.minor + 1, 0)
        if part == "patch":
            return Version(self.major, self.minor, self.patch + 1)
        raise VersionSpecError(f"not a version bump: {part!r} (expected one of {BUMPS})")

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


ZERO = Version(0, 0, 0)


@dataclass(frozen=True, slots=True)
class VersionSpec:
    """Which published versions a caller accepts.

    ``major``/``minor``/``patch`` are the fixed parts; ``None`` means any. ``latest`` has all
    three ``None``; ``1.*`` fixes the major; ``1.2.*`` major and minor; ``1.2.3`` all.
    """

    major: int | None = None
    minor: int | None = None
    patch: int | None = None

    @classmethod
    def parse(cls, text: str) -> VersionSpec:
        """Parse ``1.2.3``, ``1.2.*``, ``1.*``, ``latest`` or ``*``.

        Raises :class:`VersionSpecError` naming the accepted forms (build hashes are parsed by
        :func:`parse_ref`, not here).
        """
        t = text.strip()
        if t in ("latest", "*"):
            return cls()
        if m := _VERSION.match(t):
            return cls(int(m[1]), int(m[2]), int(m[3]))
        if m := _MINOR_WILDCARD.match(t):
            return cls(int(m[1]), int(m[2]))
        if m := _MAJOR_WILDCARD.match(t):
            return cls(int(m[1]))
        raise VersionSpecError(f"not a version spec: {text!r} (expected {SPEC_FORMS})")

    @property
    def exact(self) -> bool:
        """True for a full ``1.2.3``: at most one version can match."""
        return self.patch is not None

    def matches(self, version: Version) -> bool:
        """Whether ``version`` satisfies this spec."""
        return (
            (self.major is None or self.major == version.major)
            and (self.minor is None or self.minor == version.minor)
            and (self.patch is None or self.patch == version.patch)
        )

    def best(self, versions: Iterable[Version]) -> Version | None:
        """The highest of ``versions`` that matches, or ``None`` when none does."""
        return max((v for v in versions if self.matches(v)), default=None)

    def __str__(self) -> str:
        if self.major is None:
            return "latest"
        if self.minor is None:
            return f"{self.major}.*"
        if self.patch is None:
            return f"{self.major}.{self.minor}.*"
        return f"{self.major}.{self.minor}.{self.patch}"


@dataclass(frozen=True, slots=True)
class HashRef:
    """A reference to a build by its content hash or a unique prefix of it.

    ``prefix`` is lowercase hex without the ``sha256:`` label, 8 to 64 characters.
    """

    prefix: str

    @classmethod
    def parse(cls, text: str) -> HashRef:
        """Parse ``sha256:<hex>`` or a bare hex prefix (8+ characters, case-insensitive)."""
        t = text.strip().lower()
        hex_part = t.removeprefix(HASH_PREFIX)
        if not _HEX.match(hex_part) or not MIN_HASH_PREFIX <= len(hex_part) <= 64:
            raise VersionSpecError(
                f"not a build hash: {text!r} (expected sha256:<hex> or at least "
                f"{MIN_HASH_PREFIX} hex characters of one)"
            )
        return cls(hex_part)

    @property
    def complete(self) -> bool:
        """True when the full 64-character digest was given."""
        return len(self.prefix) == 64

    @property
    def like_pattern(self) -> str:
        """A SQL ``LIKE`` pattern matching stored hashes (``sha256:<hex>``) with this prefix."""
        return f"{HASH_PREFIX}{self.prefix}%"

    def matches(self, build_hash: str) -> bool:
        """Whether the stored hash ``sha256:<hex>`` starts with this prefix."""
        return build_hash.startswith(HASH_PREFIX + self.prefix)

    def __str__(self) -> str:
        return HASH_PREFIX + self.prefix


def parse_ref(text: str) -> VersionSpec | HashRef:
    """Parse what follows ``@`` in ``owner/name@...``: a version spec or a build hash.

    Version specs always contain a dot or are ``latest``/``*``, so a dot-free hex string of 8+
    characters is a hash prefix. Raises :class:`VersionSpecError` listing the accepted forms.
    """
    t = text.strip()
    if t.lower().startswith(HASH_PREFIX) or (
        "." not in t and len(t) >= MIN_HASH_PREFIX and _HEX.match(t.lower())
    ):
        return HashRef.parse(t)
    try:
        return VersionSpec.parse(t)
    except VersionSpecError:
        hint = f" (did you mean {t}.*?)" if re.fullmatch(r"\d+(\.\d+)?", t) else ""
        raise VersionSpecError(
            f"not a version spec or build hash: {text!r}{hint} (expected {SPEC_FORMS})"
        ) from None
