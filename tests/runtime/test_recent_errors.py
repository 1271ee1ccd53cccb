"""The model service's list of recent errors (what the console's version page shows)."""

from __future__ import annotations

from modelbus.errors import InputRejected, InvocationError, ModelError
from modelbus.runtime.service import RecentErrors


def error(message: str, version: str, cls: type[InvocationError]) -> InvocationError:
    exc = cls(message)
    exc.version = version
    return exc


def test_newest_first_per_model_and_bounded() -> None:
    recent = RecentErrors(per_model=3)
    for i in range(5):
        recent.add("acme", "ocr", error(f"boom {i}", "1.0.0", ModelError))
    recent.add("acme", "other", error("bad input", "2.0.0", InputRejected))
    kept = recent.of("acme", "ocr")
    assert [e.message for e in kept] == ["boom 4", "boom 3", "boom 2"]
    assert {e.error_type for e in kept} == {"ModelError"}
    assert [(e.version, e.error_type) for e in recent.of("acme", "other")] == [
        ("2.0.0", "InputRejected")
    ]
    assert recent.of("nobody", "here") == []
    assert kept[0].at >= kept[-1].at
