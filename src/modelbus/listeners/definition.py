"""Listener definitions: what an operator declares, validated before anything runs.

A listener is ``source -> filter -> model@version-spec -> outputs``, plus an error sink and
its policies. The same model is the HTTP API's schema, the ``listeners`` table's JSON and
the entries of a listener file. Listener files are **TOML** (read with the standard
library's ``tomllib``), an array of tables named ``listeners``::

    [[listeners]]
    name = "ocr-inbox"
    source = "dir:///srv/inbox"
    model = "acme/ocr@1.*"
    outputs = ["local://ocr-results"]
    error_sink = "local://ocr-dead"
    timeout_s = 120

    [listeners.retry]
    max_attempts = 3

    [listeners.filter.attributes]
    key = [{ suffix = ".pdf" }, { suffix = ".png" }]

Validation refuses what cannot work and says what to change: unknown schemes, malformed
URLs, bad model references, bad filters, loops (an output that is the source). One check
needs the broker and runs when the source is opened: :func:`check_lease`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, parse_qsl, urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator

from modelbus.client.refs import ModelRef
from modelbus.client.schemas import BatchFields, ClaimCheckFields, ListenerFields
from modelbus.connectors import credentials_of, redact_text, redact_url, scheme_of
from modelbus.errors import DefinitionError, InvalidInput
from modelbus.listeners.filters import compile_filter
from modelbus.listeners.retry import RetryPolicy
from modelbus.runtime.jsondoc import refuse_surrogates

__all__ = [
    "BatchPolicy",
    "ClaimCheck",
    "ListenerDefinition",
    "check_lease",
    "load_definitions",
    "model_ref",
    "parse_definitions",
]

_SPEC = re.compile(
    r"^(latest|\d+\.\d+\.\d+|\d+\.\d+\.\*|\d+\.\*|sha256:[0-9a-f]{8,64}|[0-9a-f]{7,64})$"
)


# The docstrings below are the OpenAPI descriptions of these shapes: written for API users.
# The fields are the SDK's (client.schemas); these classes add what needs the server.


class BatchPolicy(BatchFields):
    """How inputs are grouped into runner calls (see :class:`BatchFields`)."""


class ClaimCheck(ClaimCheckFields):
    """Where results too large for the sinks go (see :class:`ClaimCheckFields`)."""

    @field_validator("url")
    @classmethod
    def _store_url(cls, value: str) -> str:
        checked = _check_url(value)
        if scheme_of(checked) not in ("s3", "dir"):
            raise ValueError(f"{redact_url(value)!r}: a claim check store is s3:// or dir://")
        return checked


class ListenerDefinition(ListenerFields):
    """One event listener: every message on ``source`` goes to ``model``; results go to every
    sink in ``outputs``; what cannot succeed goes to ``error_sink`` (and the dead-letter store).
    """

    # Validated here: connector URLs, the model reference, the filter, and coherence.

    retry: RetryPolicy = Field(default_factory=RetryPolicy, description="Retry and backoff.")
    batch: BatchPolicy = Field(default_factory=BatchPolicy, description="Batching of inputs.")
    claim_check: ClaimCheck | None = Field(
        None,
        description="Store results over a sink's limit (or over_bytes) in an object store "
        "and publish a reference to them instead of dead-lettering them.",
    )

    @model_validator(mode="before")
    @classmethod
    def _unicode(cls, data: Any) -> Any:
        # A lone surrogate ("\\ud800" in the JSON) is no text: stored, it made every answer
        # that shows the listener (its list too) fail to encode.
        refuse_surrogates(data)
        return data

    @field_validator("model")
    @classmethod
    def _model_ref(cls, value: str) -> str:
        try:
            return str(model_ref(value))
        except DefinitionError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("source")
    @classmethod
    def _source_url(cls, value: str) -> str:
        return _check_url(value)

    @field_validator("outputs")
    @classmethod
    def _output_urls(cls, value: list[str]) -> list[str]:
        checked = [_check_url(url) for url in value]
        if len(set(checked)) != len(checked):
            raise ValueError("an output sink is listed twice: list each sink once")
        return checked

    @field_validator("error_sink")
    @classmethod
    def _error_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_url(value)

    @field_validator("filter")
    @classmethod
    def _filter(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        try:
            compile_filter(value)
        except DefinitionError as exc:
            raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _coherent(self) -> ListenerDefinition:
        sinks = [*self.outputs, *([self.error_sink] if self.error_sink else [])]
        if self.claim_check is not None:
            sinks.append(self.claim_check.url)
        for sink in sinks:
            if _same_place(sink, self.source):
                raise ValueError(
                    f"sink {sink} is the source itself: results would be received again "
                    "forever; publish to another queue or folder"
                )
        if self.error_sink and self.error_sink in self.outputs:
            raise ValueError("error_sink is also an output: give dead letters their own sink")
        return self

    @property
    def ref(self) -> ModelRef:
        """The parsed model reference."""
        return ModelRef.parse(self.model)

    @property
    def source_scheme(self) -> str:
        """The connector scheme of the source (``sqs`` for an SQS queue URL too)."""
        return scheme_of(self.source)

    @property
    def sinks(self) -> list[str]:
        """The output sinks' URLs, then the error sink's when there is one."""
        return [*self.outputs, *([self.error_sink] if self.error_sink else [])]

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, where: str = "") -> ListenerDefinition:
        """Validate ``data``; raises :class:`DefinitionError` listing every problem as
        ``field: what to change`` (``where`` prefixes the message, e.g. a file name)."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise DefinitionError(_explain(exc, where or _name_of(data))) from None


def model_ref(text: str) -> ModelRef:
    """Parse ``OWNER/NAME[@SPEC]`` and check the spec's form; raises DefinitionError."""
    try:
        ref = ModelRef.parse(text)
    except InvalidInput as exc:
        raise DefinitionError(str(exc)) from None
    if not _SPEC.match(ref.spec):
        raise DefinitionError(
            f"version spec {ref.spec!r} is not valid: use 1.2.3, 1.2.*, 1.*, latest or a build hash"
        )
    return ref


def check_lease(definition: ListenerDefinition, lease_s: float | None) -> None:
    """Refuse a source whose lease could lapse during an invocation that nobody extends.

    Called once the source is open (the lease is the broker's visibility timeout). With
    ``extend_lease`` on, or a broker without leases (``lease_s`` None), anything goes."""
    if definition.extend_lease or lease_s is None:
        return
    if definition.timeout_s is None:
        raise DefinitionError(
            f"listener {definition.name!r}: extend_lease is off and the source's lease is "
            f"{lease_s:g} s, but timeout_s is not set: set timeout_s below {lease_s:g} s or "
            "turn extend_lease on"
        )
    if definition.timeout_s >= lease_s:
        raise DefinitionError(
            f"listener {definition.name!r}: extend_lease is off and the source's lease "
            f"({lease_s:g} s) is not longer than timeout_s ({definition.timeout_s:g} s): "
            "messages would be redelivered while still running; lengthen the source's "
            "visibility timeout, lower timeout_s, or turn extend_lease on"
        )


def parse_definitions(text: str, *, where: str = "<text>") -> list[ListenerDefinition]:
    """Parse a TOML listener file's text (``[[listeners]]`` tables); raises DefinitionError."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DefinitionError(f"{where}: not valid TOML: {exc}") from None
    entries = document.get("listeners")
    unknown = set(document) - {"listeners"}
    if unknown or not isinstance(entries, list):
        raise DefinitionError(
            f"{where}: expected only [[listeners]] tables (found {sorted(document) or 'nothing'})"
        )
    definitions = [
        ListenerDefinition.from_mapping(entry, where=f"{where}: listeners[{i}]")
        for i, entry in enumerate(entries)
    ]
    names = [d.name for d in definitions]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DefinitionError(f"{where}: listener name(s) used twice: {', '.join(duplicates)}")
    return definitions


def load_definitions(path: str | Path) -> list[ListenerDefinition]:
    """Read a TOML listener file (see the module docstring); raises DefinitionError."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise DefinitionError(f"cannot read listener file {file}: {exc.strerror}") from None
    return parse_definitions(text, where=str(file))


def _check_url(url: str) -> str:
    shown = redact_url(url)  # an error names the URL, never its password or token
    if not url or any(c.isspace() for c in url):
        raise ValueError(f"{shown!r} is not a URL: it is empty or contains spaces")
    try:
        parts = urlsplit(url)
        for host in _hosts(parts.netloc):
            _ = urlsplit(f"//{host}").port  # raises on a malformed port
    except ValueError as exc:
        reason = redact_text(str(exc), credentials_of(url))
        raise ValueError(f"{shown!r} is not a valid URL: {reason}") from None
    try:
        scheme_of(url)
    except DefinitionError as exc:
        raise ValueError(redact_text(str(exc), credentials_of(url))) from None
    if not (parts.netloc or parts.path.strip("/")):
        raise ValueError(f"{shown!r} names no queue, topic or folder (e.g. local://jobs)")
    return url


def _hosts(netloc: str) -> list[str]:
    """The hosts of a netloc: several, comma-separated, where a broker takes a list
    (``kafka://a:9092,b:9092``, ``nats://n1,n2``)."""
    hosts = netloc.rpartition("@")[2]
    if hosts.startswith("arn:"):
        return [""]  # an AWS ARN (sns://arn:aws:sns:REGION:ACCOUNT:TOPIC): no host, no port
    return [host for host in hosts.split(",") if host] or [""]


def _same_place(a: str, b: str) -> bool:
    """Whether two URLs name the same queue/folder (a folder inside a watched folder counts)."""
    if a == b:
        return True
    pa, pb = urlsplit(a), urlsplit(b)
    if pa.scheme != pb.scheme or pa.scheme != "dir":
        return _place(pa) == _place(pb)
    folder_a = Path(pa.netloc + pa.path).expanduser().resolve()
    folder_b = Path(pb.netloc + pb.path).expanduser().resolve()
    return folder_a == folder_b or folder_b in folder_a.parents


# Query parameters that name the queue itself on the brokers that put it in the query
# (redis ?stream=, nats ?stream=&subject=, amqp ?queue=/?exchange=, postgresql ?table=).
_PLACE_PARAMS = frozenset({"stream", "subject", "queue", "exchange", "routing_key", "table"})


def _place(parts: SplitResult) -> tuple[object, ...]:
    named = sorted((k, v) for k, v in parse_qsl(parts.query) if k in _PLACE_PARAMS)
    return (parts.scheme, parts.netloc, parts.path, tuple(named))


def _name_of(data: Mapping[str, Any]) -> str:
    name = data.get("name") if isinstance(data, Mapping) else None
    return f"listener {name!r}" if isinstance(name, str) else "listener"


def _explain(exc: ValidationError, where: str) -> str:
    problems = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "definition"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field: remove it or check its spelling"
        problems.append(f"{field}: {message}")
    return f"{where}: " + "; ".join(problems)
