"""The listener form: a :class:`ListenerDefinition` as form fields, and back.

Every field of a definition has a form field, so editing a listener never drops a setting.
Fields are passed to the definition as typed (strings); the definition itself parses and
validates them, so the form refuses exactly what the API refuses, with the same message
(:meth:`ListenerDefinition.from_mapping`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

from modelbus.errors import DefinitionError
from modelbus.listeners.definition import BatchPolicy, ListenerDefinition
from modelbus.listeners.retry import RetryPolicy
from modelbus.runtime import jsondoc
from modelbus.web.console.auth import Posted

RETRY_FIELDS = ("max_attempts", "initial_backoff_s", "max_backoff_s", "multiplier", "jitter")
BATCH_FIELDS = ("max_batch_size", "max_wait_ms")
OUTPUT_MODES = ("cloudevent", "raw")


def _number(value: float | int | None) -> str:
    if value is None:
        return ""
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True, kw_only=True, slots=True)
class ListenerForm:
    """The values of the listener form, as the browser sends them (all text)."""

    name: str = ""
    source: str = ""
    model: str = ""
    outputs: str = ""
    error_sink: str = ""
    max_in_flight: str = ""
    max_body_bytes: str = ""
    timeout_s: str = ""
    max_attempts: str = ""
    initial_backoff_s: str = ""
    max_backoff_s: str = ""
    multiplier: str = ""
    jitter: str = ""
    max_batch_size: str = ""
    max_wait_ms: str = ""
    output_mode: str = "cloudevent"
    filter: str = ""
    claim_check_url: str = ""
    claim_check_over_bytes: str = ""
    extend_lease: bool = True
    enabled: bool = True

    @classmethod
    def blank(cls) -> ListenerForm:
        """A new listener's form, showing the definition's defaults."""
        retry, batch = RetryPolicy(), BatchPolicy()
        values: dict[str, Any] = {
            "max_in_flight": str(ListenerDefinition.model_fields["max_in_flight"].default),
            "max_body_bytes": str(ListenerDefinition.model_fields["max_body_bytes"].default),
            **{name: _number(getattr(retry, name)) for name in RETRY_FIELDS},
            **{name: _number(getattr(batch, name)) for name in BATCH_FIELDS},
        }
        return cls(**values)

    @classmethod
    def of(cls, definition: ListenerDefinition) -> ListenerForm:
        """The form showing ``definition`` (pass it with credentials masked)."""
        values: dict[str, Any] = {
            "name": definition.name,
            "source": definition.source,
            "model": definition.model,
            "outputs": "\n".join(definition.outputs),
            "error_sink": definition.error_sink or "",
            "max_in_flight": str(definition.max_in_flight),
            "max_body_bytes": str(definition.max_body_bytes),
            "timeout_s": _number(definition.timeout_s),
            **{name: _number(getattr(definition.retry, name)) for name in RETRY_FIELDS},
            **{name: _number(getattr(definition.batch, name)) for name in BATCH_FIELDS},
            "output_mode": definition.output_mode,
            "filter": json.dumps(definition.filter, indent=2) if definition.filter else "",
            **_claim_check_values(definition),
            "extend_lease": definition.extend_lease,
            "enabled": definition.enabled,
        }
        return cls(**values)

    @classmethod
    def posted(cls, posted: Posted) -> ListenerForm:
        """The form as posted (checkboxes are on when present)."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.type == "bool":
                values[f.name] = posted.form.get(f.name) is not None
            else:
                raw = posted.form.get(f.name)
                values[f.name] = raw.strip() if isinstance(raw, str) else ""
        return cls(**values)

    def definition(self) -> ListenerDefinition:
        """The definition these values describe; raises :class:`DefinitionError` saying
        what to change (the API's message for the same definition)."""
        return ListenerDefinition.from_mapping(self.mapping())

    def mapping(self) -> dict[str, Any]:
        """The definition's JSON form: blank optional fields are left to their defaults."""
        data: dict[str, Any] = {"name": self.name, "source": self.source, "model": self.model}
        data["outputs"] = [line.strip() for line in self.outputs.splitlines() if line.strip()]
        values = asdict(self)
        for name in ("error_sink", "max_in_flight", "max_body_bytes", "timeout_s", "output_mode"):
            if values[name]:
                data[name] = values[name]
        retry = {name: values[name] for name in RETRY_FIELDS if values[name]}
        batch = {name: values[name] for name in BATCH_FIELDS if values[name]}
        if retry:
            data["retry"] = retry
        if batch:
            data["batch"] = batch
        if self.filter:
            data["filter"] = _filter(self.filter, self.name)
        if self.claim_check_url or self.claim_check_over_bytes:
            check = {"url": self.claim_check_url, "over_bytes": self.claim_check_over_bytes}
            data["claim_check"] = {k: v for k, v in check.items() if v}
        data["extend_lease"] = self.extend_lease
        data["enabled"] = self.enabled
        return data


def _claim_check_values(definition: ListenerDefinition) -> dict[str, str]:
    check = definition.claim_check
    if check is None:
        return {}
    return {"claim_check_url": check.url, "claim_check_over_bytes": _number(check.over_bytes)}


def _filter(text: str, name: str) -> Any:
    try:
        return jsondoc.loads(text)
    except ValueError as exc:
        raise DefinitionError(f"listener {name!r}: filter: not valid JSON ({exc})") from None
