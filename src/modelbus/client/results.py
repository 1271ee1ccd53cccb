"""What calls give back: :class:`CallResult` (one successful call) and :class:`Job` (an
asynchronous call, with its result or its error once it has finished)."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from modelbus import errors
from modelbus.client.refs import ModelRef
from modelbus.client.responses import error_from_detail
from modelbus.client.schemas import CallEnvelope, ContentTypeName, ErrorDetail, JobInfo

__all__ = ["CallResult", "Job"]


@dataclass(frozen=True, kw_only=True, slots=True)
class CallResult:
    """One successful call: the decoded ``value`` (JSON value, ``str`` or ``bytes``)."""

    value: Any
    content_type: ContentTypeName
    duration_s: float
    version: str | None
    stdout: str | None = None
    mime: str | None = None

    @classmethod
    def from_envelope(cls, envelope: CallEnvelope) -> CallResult:
        meta = envelope.metadata
        value = envelope.result
        if meta.content_type == "binary":
            value = base64.b64decode(value)
        return cls(
            value=value,
            content_type=meta.content_type,
            duration_s=meta.duration,
            version=meta.version,
            stdout=meta.stdout,
            mime=meta.mime,
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Job:
    """An asynchronous call. ``result`` is set once it succeeded, ``error`` once it failed."""

    id: str
    status: str
    ref: ModelRef
    version: str | None
    created_at: float
    finished_at: float | None = None
    result: CallResult | None = None
    error: errors.ModelbusError | None = field(default=None, compare=False)

    @property
    def done(self) -> bool:
        return self.status in ("succeeded", "failed")

    def unwrap(self) -> CallResult:
        """The result; raises the job's error if it failed, or :class:`ModelbusError` if it has
        not finished yet."""
        if self.error is not None:
            raise self.error
        if self.result is None:
            raise errors.ModelbusError(f"job {self.id} has not finished (status {self.status})")
        return self.result

    @classmethod
    def from_info(cls, info: JobInfo) -> Job:
        return cls(
            id=info.id,
            status=info.status,
            ref=ModelRef(info.owner, info.name, info.spec),
            version=info.version,
            created_at=info.created_at,
            finished_at=info.finished_at,
            result=CallResult.from_envelope(info.result) if info.result else None,
            error=_job_error(info.error) if info.error else None,
        )


def _job_error(detail: ErrorDetail) -> errors.ModelbusError:
    # A job's error is what its invocation raised: a model error unless it says otherwise.
    return error_from_detail(detail, 0, errors.ModelError)
