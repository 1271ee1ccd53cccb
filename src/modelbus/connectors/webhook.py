"""Webhooks: signed HTTP POSTs in (``webhook://``) and out (``http://``, ``https://``).

**Signatures.** Both directions sign the same way (the scheme of Stripe and others)::

    X-Modelbus-Signature: t=1732460000,v1=<hex HMAC-SHA256(secret, "1732460000." + body)>

``t`` is the sending time in Unix seconds; several ``v1=`` may be given (one per secret
while a secret is rotated). A receiver checks one ``v1`` against its secret in constant time
and refuses a ``t`` more than ``tolerance_s`` (default 300) away from its clock, so a
captured request cannot be replayed later. :func:`sign` and :func:`verify` implement it.

**Source: ``webhook://NAME?secret=SECRET``.** modelbus itself receives the events at
``POST /v1/hooks/NAME`` (no API key: the signature authenticates the sender). A request is
answered ``202 Accepted`` only once the event is durably queued for every listener whose
source is ``webhook://NAME`` and whose secret its signature matches (each listener has its
own queue, ``DATA_DIR/hooks/LISTENER.sqlite``, an embedded ``local`` queue, so each gets
every event); a bad or stale signature is ``401``, an unknown NAME ``404``. The listener
reads its queue like any ``local://`` source (leases, delayed retries, receive counts). The
message id is the request's ``Idempotency-Key`` header when given (senders should give one:
a retried POST is then not run twice), else derived from the signature. The attributes are
``content-type``, the ``ce-*`` (binary CloudEvents), ``traceparent``/``tracestate`` and other
``x-*`` headers (``X-Modelbus-Attr-NAME: VALUE`` becomes attribute ``NAME``), lower-cased.
Options: ``secret`` (required, at least 16 characters), ``tolerance_s`` (300),
``lease_s`` (30), ``poll_ms`` (100). Events are processed by the server that accepted them.

**Sink: ``http(s)://HOST/PATH?secret=SECRET&timeout_s=30``.** Each result is POSTed to the
URL (without those two options; other query parameters are kept): the body as it is, its
``Content-Type`` from the message, ``Idempotency-Key`` and ``X-Modelbus-Id`` = the message's
deterministic id (a receiver drops what it has seen), ``X-Modelbus-Signature`` when a
``secret`` is given, and the other attributes as ``X-Modelbus-Attr-NAME`` headers (values
percent-encoded where they are not plain ASCII). A 2xx answer is success; 408, 429, 5xx,
timeouts and connection errors are transient (the listener retries with backoff); any other
answer is permanent (the message is dead-lettered). Redirects are not followed. A failure
names the status code and its standard phrase only: the receiver's body is never read into
an error (it would show in the listener's status). With an egress policy in the context
(:mod:`modelbus.connectors.egress`) the host is checked again before each POST.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import httpx

from modelbus.connectors import WEBHOOK_SIGNATURE_HEADER
from modelbus.connectors.base import ConnectorContext, OutMessage
from modelbus.connectors.egress import Egress
from modelbus.connectors.local import LocalSource, SqliteQueue, parse_query
from modelbus.connectors.urls import redact_url
from modelbus.errors import (
    ConnectorConfigError,
    ConnectorError,
    DefinitionError,
    PolicyRefused,
    Unauthenticated,
)

__all__ = [
    "ATTRIBUTE_PREFIX",
    "SIGNATURE_HEADER",
    "HookQueues",
    "WebhookInbox",
    "WebhookOptions",
    "WebhookSink",
    "hook_attributes",
    "hook_message_id",
    "hook_queue_path",
    "make_inbox",
    "make_sink",
    "make_source",
    "sign",
    "verify",
]

SIGNATURE_HEADER = WEBHOOK_SIGNATURE_HEADER
ATTRIBUTE_PREFIX = "x-modelbus-attr-"
DEFAULT_TOLERANCE_S = 300.0
MIN_SECRET_CHARS = 16
SEND_CONCURRENCY = 8
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")
_ID = re.compile(r"^[\x21-\x7e]{1,200}$")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
_MAX_SIGNATURE_PARTS = 16  # t plus one v1 per secret being rotated: a few are plenty
_KEPT_HEADERS = ("content-type", "traceparent", "tracestate")
_DROPPED_HEADERS = {"x-modelbus-signature", "x-forwarded-for", "x-real-ip"}


# --- signatures ------------------------------------------------------------------------------


def _digest(secret: str, timestamp: str, body: bytes) -> str:
    signed = timestamp.encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, *, timestamp: int | None = None) -> str:
    """The ``X-Modelbus-Signature`` value for ``body`` sent now (or at ``timestamp``)."""
    t = str(int(time.time()) if timestamp is None else timestamp)
    return f"t={t},v1={_digest(secret, t, body)}"


def _parse_signature(header: str) -> tuple[str, list[str]]:
    """``(t, [v1, ...])`` from a signature header; raises Unauthenticated when it has no
    ASCII-digit ``t`` or no well-formed ``v1`` (64 lower-case hex digits). Anything a client
    can send (non-ASCII digits, a thousand-digit time) ends here, never in a 500."""
    timestamp, signatures = "", []
    for part in header.split(",")[:_MAX_SIGNATURE_PARTS]:
        key, _, value = part.strip().partition("=")
        if key == "t":
            timestamp = value
        elif key == "v1" and _HEX_DIGEST.fullmatch(value):
            signatures.append(value)
    if not _TIMESTAMP.fullmatch(timestamp) or not signatures:
        raise Unauthenticated(f"malformed {SIGNATURE_HEADER}: expected t=UNIX_SECONDS,v1=HEX")
    return timestamp, signatures


def verify(
    secret: str,
    header: str | None,
    body: bytes,
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> str:
    """Check a signature header; returns the matching ``v1`` signature. Raises
    :class:`Unauthenticated` when it is missing, malformed, does not match, or its time is
    more than ``tolerance_s`` away (a replay, or a clock far off)."""
    if not header:
        raise Unauthenticated(f"no {SIGNATURE_HEADER} header: webhooks must be signed")
    timestamp, signatures = _parse_signature(header)
    expected = _digest(secret, timestamp, body)
    matching = [s for s in signatures if hmac.compare_digest(s, expected)]
    if not matching:
        raise Unauthenticated("the webhook signature does not match")
    skew_s = abs((time.time() if now is None else now) - int(timestamp))
    if skew_s > tolerance_s:
        raise Unauthenticated(
            f"the webhook signature is {skew_s:.0f} s old or early (at most {tolerance_s:g} s "
            "is accepted): replays are refused; sign each request when sending it"
        )
    return matching[0]


# --- the source ------------------------------------------------------------------------------


def _secret(raw: str) -> str:
    if len(raw) < MIN_SECRET_CHARS:
        raise ValueError(raw)
    return raw


def _positive(raw: str) -> float:
    value = float(raw)
    if not value > 0:
        raise ValueError(raw)
    return value


@dataclass(frozen=True, kw_only=True, slots=True)
class WebhookOptions:
    """A ``webhook://NAME?secret=...`` URL, parsed."""

    name: str
    secret: str = field(repr=False)
    tolerance_s: float = DEFAULT_TOLERANCE_S
    lease_s: float = 30.0
    poll_ms: float = 100.0

    @classmethod
    def from_url(cls, url: str) -> WebhookOptions:
        """Parse the URL; raises DefinitionError saying what to change."""
        shown = redact_url(url)
        parts = urlsplit(url)
        if parts.scheme != "webhook" or parts.path.strip("/") or not _NAME.match(parts.netloc):
            raise DefinitionError(
                f"{shown}: expected webhook://NAME?secret=SECRET (NAME: letters, digits, '_', "
                "'.', '-'); senders POST to /v1/hooks/NAME"
            )
        try:
            options = parse_query(
                url,
                {
                    "secret": _secret,
                    "tolerance_s": _positive,
                    "lease_s": _positive,
                    "poll_ms": _positive,
                },
            )
        except DefinitionError:
            raise DefinitionError(
                f"{shown}: options are secret (at least {MIN_SECRET_CHARS} characters), "
                "tolerance_s, lease_s and poll_ms"
            ) from None
        if "secret" not in options:
            raise DefinitionError(
                f"{shown}: give ?secret=... (at least {MIN_SECRET_CHARS} characters, e.g. from "
                "`openssl rand -hex 32`): senders sign with it, and unsigned posts are refused"
            )
        return cls(name=parts.netloc, **options)


def hook_queue_path(data_dir: Path, listener: str) -> Path:
    """The embedded queue holding a webhook listener's accepted events."""
    return data_dir / "hooks" / f"{listener}.sqlite"


def make_source(url: str, ctx: ConnectorContext) -> LocalSource:
    """The listener's end of its hook queue (filled by ``POST /v1/hooks/NAME``)."""
    if urlsplit(url).scheme in ("http", "https"):
        raise DefinitionError(
            f"{redact_url(url)} is a webhook sink: to receive webhooks, use "
            "webhook://NAME?secret=... as the source (senders POST to /v1/hooks/NAME)"
        )
    options = WebhookOptions.from_url(url)
    queue = SqliteQueue(hook_queue_path(ctx.data_dir, ctx.listener))
    return LocalSource(queue, lease_s=options.lease_s, poll_ms=options.poll_ms)


def hook_attributes(headers: Mapping[str, str]) -> dict[str, str]:
    """The attributes of an accepted webhook, from its request headers (see module doc)."""
    attributes: dict[str, str] = {}
    for raw_name, value in headers.items():
        name = raw_name.lower()
        if name in _DROPPED_HEADERS:
            continue
        if name.startswith(ATTRIBUTE_PREFIX):
            attributes[name.removeprefix(ATTRIBUTE_PREFIX)] = unquote(value)
        elif name in _KEPT_HEADERS or name.startswith(("ce-", "x-")):
            attributes.setdefault(name, value)
    return attributes


def hook_message_id(headers: Mapping[str, str], signature: str) -> str:
    """The message id of an accepted webhook: its ``Idempotency-Key`` (printable ASCII, at
    most 200 characters), else one derived from its (unique per send) signature."""
    given = headers.get("idempotency-key") or headers.get("x-modelbus-id")
    if given is not None:
        if not _ID.match(given):
            raise DefinitionError("Idempotency-Key must be 1-200 printable ASCII characters")
        return given
    return "hook-" + hashlib.sha256(signature.encode("ascii")).hexdigest()[:32]


class HookQueues:
    """Open handles on the hook queues of this process's listeners, for the ingress route.
    Handles are opened on first use and kept; :meth:`close` closes them all."""

    def __init__(self, data_dir: Path) -> None:
        self._data_dir = data_dir
        self._queues: dict[str, SqliteQueue] = {}
        self._lock = asyncio.Lock()

    async def publish(self, listener: str, message: OutMessage) -> None:
        """Queue ``message`` durably for ``listener`` (an id still queued is a no-op)."""
        queue = await self._queue(listener)
        await queue.publish([message])

    async def _queue(self, listener: str) -> SqliteQueue:
        async with self._lock:
            queue = self._queues.get(listener)
            if queue is None:
                queue = SqliteQueue(hook_queue_path(self._data_dir, listener))
                await queue.open()
                self._queues[listener] = queue
            return queue

    async def close(self) -> None:
        """Close every handle."""
        async with self._lock:
            queues, self._queues = list(self._queues.values()), {}
        await asyncio.gather(*(q.close() for q in queues), return_exceptions=True)


class WebhookInbox:
    """The intake of ``POST /v1/hooks/NAME`` (a :class:`~modelbus.connectors.base.Inbox`):
    checks a request's signature against each listener's secret and queues the event
    durably for every listener it matches."""

    def __init__(self, data_dir: Path) -> None:
        self._queues = HookQueues(data_dir)

    def hook_name(self, source_url: str) -> str | None:
        """NAME for a ``webhook://NAME?...`` source; None for any other (or a malformed) one."""
        if urlsplit(source_url).scheme != "webhook":
            return None
        try:
            return WebhookOptions.from_url(source_url).name
        except DefinitionError:
            return None

    async def accept(
        self, listeners: Sequence[tuple[str, str]], headers: Mapping[str, str], body: bytes
    ) -> tuple[str, list[str]]:
        """Queue the request for each ``(listener, source URL)`` whose secret its signature
        matches; returns the event's message id and those listeners. Raises
        :class:`Unauthenticated` when it matches none, DefinitionError for a malformed
        ``Idempotency-Key``."""
        header = headers.get(SIGNATURE_HEADER)
        matched, signature, refusal = [], "", None
        for listener, source_url in listeners:
            options = WebhookOptions.from_url(source_url)
            try:
                signature = verify(options.secret, header, body, tolerance_s=options.tolerance_s)
            except Unauthenticated as exc:
                refusal = exc
                continue
            matched.append(listener)
        if not matched:
            assert refusal is not None
            raise refusal
        message = OutMessage(
            id=hook_message_id(headers, signature),
            body=body,
            attributes=hook_attributes(headers),
        )
        for listener in matched:
            await self._queues.publish(listener, message)
        return message.id, matched

    async def close(self) -> None:
        """Close the hook queues opened so far."""
        await self._queues.close()


def make_inbox(data_dir: Path) -> WebhookInbox:
    """The webhook intake of a server whose data directory is ``data_dir``."""
    return WebhookInbox(data_dir)


# --- the sink --------------------------------------------------------------------------------


def _split_sink_url(url: str) -> tuple[str, dict[str, str]]:
    """The target URL without our options, and our options."""
    head, q, rest = url.partition("?")
    query, hash_mark, fragment = rest.partition("#")
    ours: dict[str, str] = {}
    kept = []
    for piece in query.split("&") if q else []:
        name, _, value = piece.partition("=")
        if unquote(name) in ("secret", "timeout_s"):
            ours[unquote(name)] = unquote(value)
        elif piece:
            kept.append(piece)
    target = head + ("?" + "&".join(kept) if kept else "") + (hash_mark + fragment)
    return target, ours


def _header_value(value: str) -> str:
    """A header-safe form of an attribute value (printable ASCII kept, the rest encoded)."""
    if all(" " <= c <= "~" for c in value):
        return value
    return quote(value, safe=" !#$&'()*+,/:;=?@[]^_`{|}~")


class WebhookSink:
    """POSTs each message to one URL (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        secret: str | None,
        timeout_s: float,
        listener: str,
        egress: Egress | None = None,
    ) -> None:
        self.url = url
        self._egress = egress
        self._secret = secret
        self._timeout_s = timeout_s
        self._listener = listener
        self._http: httpx.AsyncClient | None = None

    async def open(self) -> None:
        """Make the HTTP client (nothing is sent: a probe would be a request of its own)."""
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(self._timeout_s), follow_redirects=False
            )

    async def publish(self, messages: Sequence[OutMessage]) -> None:
        """POST every message (a few at a time); raises the first failure, permanent only
        if every failure was."""
        if self._http is None:
            raise ConnectorError(f"listener {self._listener!r}: webhook sink is not open")
        slots = asyncio.Semaphore(SEND_CONCURRENCY)

        async def one(message: OutMessage) -> ConnectorError | None:
            async with slots:
                try:
                    await self._post(message)
                except ConnectorError as exc:
                    return exc
                return None

        failures = [e for e in await asyncio.gather(*(one(m) for m in messages)) if e]
        if failures:
            permanent = all(e.permanent for e in failures)
            raise ConnectorError(failures[0].message, permanent=permanent)

    async def _post(self, message: OutMessage) -> None:
        assert self._http is not None
        body = bytes(message.body)
        if self._egress is not None:  # again at each connection: what the name resolves to now
            parts = urlsplit(self.url)
            try:
                await self._egress.check_connect(
                    parts.hostname or "", parts.port, redact_url(self.url)
                )
            except PolicyRefused as exc:
                raise ConnectorConfigError(f"listener {self._listener!r}: {exc.message}") from None
        try:
            answer = await self._http.post(self.url, content=body, headers=self._headers(message))
        except httpx.HTTPError as exc:  # timeouts, refused connections, resets
            raise ConnectorError(
                f"listener {self._listener!r}: POST {redact_url(self.url)} failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        self._check(answer)

    def _headers(self, message: OutMessage) -> dict[str, str]:
        attributes = dict(message.attributes)
        headers = {
            "Content-Type": attributes.pop("content-type", "application/octet-stream"),
            "Idempotency-Key": message.id,
            "X-Modelbus-Id": message.id,
            "User-Agent": "modelbus-webhook",
        }
        if self._secret:
            headers[SIGNATURE_HEADER] = sign(self._secret, bytes(message.body))
        for name, value in attributes.items():
            headers[f"X-Modelbus-Attr-{name}"] = _header_value(value)
        return headers

    def _check(self, answer: httpx.Response) -> None:
        status = answer.status_code
        if 200 <= status < 300:
            return
        transient = status in (408, 429) or status >= 500
        # The status code and its standard phrase only: the receiver's body (or its own
        # reason phrase) never reaches a status, a log or a dead letter.
        raise ConnectorError(
            f"listener {self._listener!r}: POST {redact_url(self.url)} answered {status}"
            + (f" {_phrase(status)}" if _phrase(status) else "")
            + ("" if transient else " (not retried: fix the receiver or the URL)"),
            permanent=not transient,
        )

    async def close(self) -> None:
        """Close the HTTP client."""
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()


def make_sink(url: str, ctx: ConnectorContext) -> WebhookSink:
    """A sink POSTing to ``url``; raises DefinitionError for a malformed one."""
    if urlsplit(url).scheme == "webhook":
        raise DefinitionError(
            f"{redact_url(url)}: webhook:// receives webhooks; to POST results, give the "
            "receiver's http(s):// URL (with ?secret=... to sign them)"
        )
    target, ours = _split_sink_url(url)
    parts = urlsplit(target)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DefinitionError(f"{redact_url(url)}: expected http(s)://HOST[:PORT]/PATH")
    try:
        timeout_s = float(ours.get("timeout_s", "30"))
    except ValueError:
        timeout_s = -1.0
    if not 0 < timeout_s <= 3600:
        raise DefinitionError(f"{redact_url(url)}: timeout_s must be seconds between 0 and 3600")
    return WebhookSink(
        target,
        secret=ours.get("secret") or None,
        timeout_s=timeout_s,
        listener=ctx.listener,
        egress=ctx.policy.egress,
    )


def _phrase(status: int) -> str:
    """The standard reason phrase of ``status`` ("" for a code with none)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
