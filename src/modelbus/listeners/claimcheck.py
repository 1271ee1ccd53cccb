"""The claim check: results too large for the sinks go to an object store, and the sinks get
a reference to them (as SageMaker asynchronous inference does with its output location).

A listener with ``claim_check = {url = "s3://BUCKET/PREFIX", over_bytes = N}`` (or
``dir:///FOLDER``) checks each result message before publishing: when an output sink's size
limit refuses it (``Sink.refusal``: SQS and SNS take 256 KiB) or its body is over
``over_bytes``, the result's data (the model's output, not the envelope) is written to the
store, named by its SHA-256 digest (so a redelivery writes the same object again, and equal
results share one), and the message published instead carries
:meth:`Reference.data`: ``{"claim_check": {"url", "size", "sha256", "content_type"}}``, with
the same id and correlation as the result would have had (a CloudEvent by default), plus the
message attribute ``claimcheck``: the object's URL. The object is stored before any sink is
written; failing to store it is the delivery's failure (transient: retried).

Without a claim check a result a sink refuses is dead-lettered, as before.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from modelbus.connectors.base import OutMessage
from modelbus.listeners.envelopes import mime_of
from modelbus.runtime.invocation import Payload, Result

__all__ = ["CLAIM_CHECK_ATTRIBUTE", "Reference", "reference_result", "stored_object"]

# The message attribute naming the stored object's URL on a reference message.
CLAIM_CHECK_ATTRIBUTE = "claimcheck"


@dataclass(frozen=True, kw_only=True, slots=True)
class Reference:
    """Where a result was stored: its URL, size in bytes, SHA-256 (hex) and MIME type."""

    url: str
    size: int
    sha256: str
    content_type: str

    def data(self) -> dict[str, Any]:
        """The reference message's data."""
        return {
            "claim_check": {
                "url": self.url,
                "size": self.size,
                "sha256": self.sha256,
                "content_type": self.content_type,
            }
        }


def stored_object(result: Result) -> OutMessage:
    """What the store gets for ``result``: its output's bytes, named by their digest."""
    output = result.output
    digest = hashlib.sha256(output.data).hexdigest()
    return OutMessage(id=digest, body=output.data, attributes={"content-type": mime_of(output)})


def reference_result(result: Result, reference: Reference) -> Result:
    """``result`` with its output replaced by the reference to where it was stored."""
    return Result(
        output=Payload.from_json(reference.data()),
        duration_ms=result.duration_ms,
        version=result.version,
        stdout=result.stdout,
    )
