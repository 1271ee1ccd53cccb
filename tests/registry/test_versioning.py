"""Version numbers, specs and build-hash references."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelbus.errors import VersionSpecError
from modelbus.registry.versioning import HashRef, Version, VersionSpec, parse_ref

HEX64 = "ab" * 32
numbers = st.integers(min_value=0, max_value=10_000)


def v(text: str) -> Version:
    return Version.parse(text)


@pytest.mark.parametrize(
    "text", ["1.2", "1", "v1.2.3", "1.2.3.4", "01.2.3", "1.02.3", "", "1.2.x", "-1.2.3"]
)
def test_bad_versions_say_what_is_accepted(text: str) -> None:
    with pytest.raises(VersionSpecError, match=r"MAJOR\.MINOR\.PATCH"):
        Version.parse(text)


def test_versions_order_numerically_not_as_text() -> None:
    assert v("1.10.0") > v("1.9.9") > v("1.9.0") > v("0.99.99")
    assert sorted([v("2.0.0"), v("0.0.1"), v("1.10.0"), v("1.2.0")]) == [
        v("0.0.1"),
        v("1.2.0"),
        v("1.10.0"),
        v("2.0.0"),
    ]


def test_bumps() -> None:
    assert v("1.2.3").bump("major") == v("2.0.0")
    assert v("1.2.3").bump("minor") == v("1.3.0")
    assert v("1.2.3").bump("patch") == v("1.2.4")
    with pytest.raises(VersionSpecError, match="bump"):
        v("1.2.3").bump("micro")  # type: ignore[arg-type]


@given(numbers, numbers, numbers, numbers, numbers, numbers)
def test_order_is_the_order_of_the_numbers(a: int, b: int, c: int, x: int, y: int, z: int) -> None:
    assert (Version(a, b, c) < Version(x, y, z)) == ((a, b, c) < (x, y, z))
    assert Version.parse(str(Version(a, b, c))) == Version(a, b, c)


AVAILABLE = [v(t) for t in ["0.9.0", "1.0.0", "1.2.0", "1.2.7", "1.10.1", "2.0.0"]]


@pytest.mark.parametrize(
    ("spec", "best"),
    [
        ("latest", "2.0.0"),
        ("*", "2.0.0"),
        ("1.*", "1.10.1"),
        ("1.2.*", "1.2.7"),
        ("1.2.0", "1.2.0"),
        ("0.*", "0.9.0"),
        ("3.*", None),
        ("1.3.*", None),
        ("1.2.1", None),
    ],
)
def test_spec_best_is_the_highest_match(spec: str, best: str | None) -> None:
    parsed = VersionSpec.parse(spec)
    assert parsed.best(AVAILABLE) == (v(best) if best else None)
    assert VersionSpec.parse(str(parsed)) == parsed


def test_spec_matches() -> None:
    assert VersionSpec.parse("1.*").matches(v("1.0.0"))
    assert not VersionSpec.parse("1.*").matches(v("2.0.0"))
    assert not VersionSpec.parse("1.2.*").matches(v("1.20.0"))
    assert VersionSpec.parse("latest").best([]) is None
    assert VersionSpec.parse("1.2.3").exact and not VersionSpec.parse("1.2.*").exact


@pytest.mark.parametrize("text", ["1.2", "1.*.3", "*.1", "latest.1", "1.2.3-rc1", "newest", "1.x"])
def test_bad_specs_name_the_accepted_forms(text: str) -> None:
    with pytest.raises(VersionSpecError, match=r"1\.2\.\*.*latest"):
        parse_ref(text)


def test_bare_minor_gets_a_hint() -> None:
    with pytest.raises(VersionSpecError, match=r"did you mean 1\.2\.\*"):
        parse_ref("1.2")


@pytest.mark.parametrize(
    ("text", "prefix"),
    [
        (f"sha256:{HEX64}", HEX64),
        ("sha256:ABABABAB", "abababab"),
        ("deadbeef", "deadbeef"),
        ("12345678", "12345678"),
        (HEX64, HEX64),
    ],
)
def test_hash_refs(text: str, prefix: str) -> None:
    ref = parse_ref(text)
    assert ref == HashRef(prefix)
    assert isinstance(ref, HashRef) and ref.matches(f"sha256:{HEX64}") == HEX64.startswith(prefix)
    assert ref.complete == (len(prefix) == 64)


@pytest.mark.parametrize(
    "text", ["sha256:abc", "sha256:" + "g" * 10, "sha256:" + "a" * 65, "abc1234"]
)
def test_bad_hash_refs(text: str) -> None:
    with pytest.raises(VersionSpecError):
        parse_ref(text)


def test_version_specs_are_not_taken_for_hashes() -> None:
    assert parse_ref("latest") == VersionSpec()
    assert parse_ref("1.2.3") == VersionSpec(1, 2, 3)


@pytest.mark.parametrize("text", ["1000000000.0.0", "1.2." + "9" * 5000])
def test_version_numbers_have_at_most_nine_digits(text: str) -> None:
    # Larger ones overflow the store's integer columns; thousands of digits, int() itself.
    with pytest.raises(VersionSpecError, match="at most nine digits"):
        Version.parse(text)
    with pytest.raises(VersionSpecError):
        parse_ref(text)
    assert Version.parse("999999999.0.0").major == 999_999_999
