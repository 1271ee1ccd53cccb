"""The JSON shapes of the HTTP API, shared by the SDK (parsing) and the routes (OpenAPI).

Pydantic only, nothing of the server: the SDK reads responses with these classes and the
routes declare them (:mod:`modelbus.web.api.schemas`), so the server and its clients cannot
drift apart. A listener definition is its fields here (:class:`ListenerFields`); the routes type
it as :class:`~modelbus.listeners.definition.ListenerDefinition`, which adds the server's
checks.
Times are seconds since the epoch.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from modelbus.config import DEFAULT_MAX_BODY_BYTES

ContentTypeName = Literal["json", "text", "binary"]
# A redrive's pace when the request names none (the server's ManagerOptions default).
DEFAULT_REDRIVE_RATE_PER_S = 10.0
MAX_REDRIVE_RATE_PER_S = 10_000
# Most records on one page of a listing of runs or dead letters.
MAX_PAGE_SIZE = 1000
RunStatus = Literal["running", "retrying", "succeeded", "dead_lettered"]
DEFAULT_MAX_BATCH_SIZE = 64
DEFAULT_MAX_IN_FLIGHT = 100
JobStatus = Literal["queued", "running", "succeeded", "failed"]
LISTENER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"


class Schema(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class ErrorDetail(Schema):
    message: str = Field(description="What went wrong, fit for a user.")
    error_type: str = Field(
        description="Short machine name; for a model error, the model's exception class."
    )
    code: str = Field("", description="The modelbus error class (VersionNotFound, ...).")
    stacktrace: str | None = Field(None, description="The model's traceback, if any.")
    permanent: bool | None = Field(None, description="Invocation errors: retrying cannot help.")
    version: str | None = Field(None, description="Invocation errors: the version that failed.")
    log: str | None = Field(None, description="Build errors: the build log.")


class ErrorBody(Schema):
    error: ErrorDetail


class CallMetadata(Schema):
    content_type: ContentTypeName = Field(description="How `result` is encoded.")
    duration: float = Field(description="Seconds the model took.")
    version: str | None = Field(None, description="The resolved version that ran.")
    mime: str | None = Field(None, description="MIME type of a binary result, when known.")
    stdout: str | None = Field(None, description="Captured stdout, when asked with stdout=true.")


class CallEnvelope(Schema):
    result: Any = Field(description="JSON value, text, or base64 text for binary results.")
    metadata: CallMetadata


class ModelInfo(Schema):
    owner: str
    name: str
    description: str = ""
    created_at: float
    latest_version: str | None = Field(None, description="Newest published version, if any.")


class VersionInfo(Schema):
    owner: str
    name: str
    version: str = Field(description="Semantic version, MAJOR.MINOR.PATCH.")
    build: str = Field(description="Content hash of the build this version runs.")
    published: bool = Field(description="Served by version specs (latest, 1.*, ...).")
    created_at: float


class BuildInfo(Schema):
    hash: str = Field(description="Content hash of the model artifact (sha256:...).")
    owner: str
    name: str
    status: Literal["building", "ready", "failed"]
    env_hash: str | None = Field(None, description="The shared environment it runs in.")
    created_at: float
    finished_at: float | None = None
    versions: list[str] = Field(default_factory=list, description="Versions pointing at it.")
    manifest: dict[str, Any] = Field(default_factory=dict, description="Its modelbus.toml.")
    log: str | None = Field(None, description="The build log (on the single-build route).")
    node_logs: dict[str, str] | None = Field(
        None,
        description="On the single-build route: the logs of the environment builds that "
        "nodes ran for this build when they first needed it, by node name (from the "
        "artifact store; null when it cannot be read now).",
    )


class PushInfo(Schema):
    owner: str
    name: str
    version: str | None = Field(
        description="The version recorded; null for a build pushed without --version/--bump, "
        "callable by its hash only."
    )
    build: str = Field(description="Content hash of the build.")
    published: bool
    created: bool = Field(description="False when the same push was made before (a no-op).")
    built: bool = Field(description="A build ran for this push.")
    env_reused: bool = Field(description="The build found its environment already built.")


class PublishRequest(Schema):
    build: str | None = Field(
        None, description="Build hash or unique prefix (default: the newest ready build)."
    )
    version: str | None = Field(None, description="The version to publish or give the build.")
    bump: Literal["major", "minor", "patch"] | None = Field(
        None, description="Give the build the next major/minor/patch version."
    )


class PushEvent(Schema):
    """One line of a push's NDJSON progress stream."""

    event: Literal["log", "result", "error"]
    line: str | None = Field(None, description="`log` events: one line of build output.")
    result: PushInfo | None = Field(None, description="`result` event: the pushed version.")
    error: ErrorDetail | None = Field(None, description="`error` event: why the push failed.")


class JobInfo(Schema):
    id: str
    status: JobStatus
    owner: str
    name: str
    spec: str = Field(description="The version spec the job was submitted with.")
    version: str | None = Field(None, description="The resolved version, once known.")
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    result: CallEnvelope | None = Field(None, description="Set when status is succeeded.")
    error: ErrorDetail | None = Field(None, description="Set when status is failed.")


class KeyInfoOut(Schema):
    id: str = Field(description="Public identifier of the key (not the secret).")
    name: str
    scopes: list[str]
    created_at: float
    last_used_at: float | None = None
    revoked_at: float | None = None


class KeyCreate(Schema):
    name: str = Field("", description="A label for the key.")
    scopes: list[str] = Field(
        description="`call:*`, `call:OWNER/NAME`, `models:manage`, `listeners:manage`, `admin`."
    )


class CreatedKey(Schema):
    key: str = Field(description="The secret. Shown this once and never again.")
    info: KeyInfoOut


class StoreHealth(Schema):
    """Whether this node reached its artifact store at the last check."""

    ok: bool
    store: str = Field(description="Where the artifact store is (never a credential).")
    error: str | None = Field(None, description="Why the store could not be reached.")
    checked_at: float = Field(description="When it was last checked (Unix time).")


class Health(Schema):
    status: Literal["ok", "degraded"] = Field(
        "ok",
        description="`degraded`: the node serves, but a part it depends on is down (see "
        "`artifacts`); versions it has not fetched yet cannot be pushed or called here.",
    )
    version: str
    artifacts: StoreHealth | None = Field(
        None, description="The artifact store, as this node sees it."
    )


# --- listeners, runs, dead letters -----------------------------------------------------------


class RetryFields(BaseModel):
    """When a transient failure is retried, and after how long (a listener's ``retry``).

    A delivery is tried at most ``max_attempts`` times (the broker's delivery count); after
    the last transient failure it is dead-lettered. Permanent failures are dead-lettered at
    once, whatever this policy says.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_attempts: int = Field(
        5, ge=1, le=1000, description="Deliveries of one message before it is dead-lettered."
    )
    initial_backoff_s: float = Field(
        1.0, ge=0, le=86_400, description="Delay before the second attempt, in seconds."
    )
    max_backoff_s: float = Field(
        300.0, ge=0, le=86_400, description="Cap on any one delay, in seconds."
    )
    multiplier: float = Field(
        2.0, ge=1, le=100, description="Each delay is this many times the previous one."
    )
    jitter: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Fraction of each delay randomised away (0 = none, 1 = full jitter).",
    )


class BatchFields(BaseModel):
    """How inputs are grouped into runner calls (a listener's ``batch``).

    Batching is adaptive: what one receive returns goes to the model together, and inputs that
    arrive while the runners are busy go in their next call together, up to
    ``max_batch_size`` inputs per call (never more than ``max_in_flight``); an idle runner
    takes an input at once. A model with ``apply_batch`` gets them in one ``apply_batch``
    call; the runner loops ``apply`` for one without. ``max_batch_size = 1`` calls the model
    with one input at a time. ``max_wait_ms`` over 0 makes the first input wait that long
    for more before the call goes.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_batch_size: int = Field(
        DEFAULT_MAX_BATCH_SIZE, ge=1, le=1000, description="Most inputs per model call."
    )
    max_wait_ms: int = Field(
        0,
        ge=0,
        le=60_000,
        description="Longest wait for a batch to fill, in milliseconds (0: no fixed wait).",
    )


class ClaimCheckFields(BaseModel):
    """Where results too large for the sinks go (a listener's ``claim_check``).

    A result over an output sink's size limit (SQS 256 KiB, SNS...) or over ``over_bytes``
    is written to the object store at ``url``, named by its SHA-256 digest, and the sinks
    get a small reference instead: ``{"claim_check": {"url", "size", "sha256",
    "content_type"}}`` with the usual correlation (a CloudEvent by default), plus the
    message attribute ``claimcheck`` (the object's URL). Without a claim check, such a
    result is dead-lettered.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = Field(
        description="Object store: s3://BUCKET/PREFIX (with the s3:// sink's options) or "
        "dir:///FOLDER.",
        examples=["s3://results/large/"],
    )
    over_bytes: int | None = Field(
        None,
        ge=1,
        description="Also store results whose message body is over this many bytes (null: "
        "only those a sink's limit refuses).",
    )


class ListenerFields(BaseModel):
    """The fields of an event listener's definition: every message on ``source`` goes to
    ``model``; results go to every sink in ``outputs``; what cannot succeed goes to
    ``error_sink`` (and the dead-letter store).

    Names, types, defaults and bounds only: the server's
    :class:`~modelbus.listeners.definition.ListenerDefinition` adds the checks that need the
    server (connector schemes and URLs, the model reference, filters, loops).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(
        pattern=LISTENER_NAME_PATTERN,
        description="Unique name: letters, digits, '_', '.', '-' (at most 100).",
        examples=["ocr-inbox"],
    )
    source: str = Field(
        description="Connector URL messages are received from, e.g. local://jobs, "
        "dir:///srv/inbox, sqs://queue?region=eu-west-1.",
        examples=["local://jobs"],
    )
    model: str = Field(
        description="OWNER/NAME@SPEC; SPEC is a version (1.2.3), a wildcard (1.2.*, 1.*), "
        "latest (the default), or a build hash.",
        examples=["acme/ocr@1.*"],
    )
    outputs: list[str] = Field(
        default_factory=list,
        description="Sink URLs every result is published to (all of them, before the "
        "message is acknowledged). May be empty: results are then only recorded.",
    )
    error_sink: str | None = Field(
        None,
        description="Sink URL dead letters are published to (original body and attributes, "
        "plus the error). Dead letters are stored in the database either way.",
    )
    retry: RetryFields = Field(default_factory=RetryFields, description="Retry and backoff.")
    batch: BatchFields = Field(default_factory=BatchFields, description="Batching of inputs.")
    max_in_flight: int = Field(
        DEFAULT_MAX_IN_FLIGHT,
        ge=1,
        le=10_000,
        description="Most deliveries held at once (back-pressure); a receive asks for at most "
        "the free slots. Lower it for slow models shared by several nodes.",
    )
    timeout_s: float | None = Field(
        None, gt=0, le=86_400, description="Per-invocation timeout; null = the version's default."
    )
    max_body_bytes: int = Field(
        DEFAULT_MAX_BODY_BYTES,
        ge=1,
        le=1024 * 1024 * 1024,
        description="Largest message body the listener decodes and runs; a larger one is "
        "dead-lettered at once (PayloadTooLarge) without reaching the model.",
    )
    extend_lease: bool = Field(
        True,
        description="Extend the source's lease (visibility timeout) while a message is being "
        "processed, so a slow model does not cause redelivery.",
    )
    filter: dict[str, Any] | None = Field(
        None,
        description="EventBridge-style pattern on the decoded body and the attributes; "
        "messages that do not match are acknowledged without invoking. "
        "See modelbus.listeners.filters.",
        examples=[{"body": {"type": ["invoice"]}, "attributes": {"key": [{"suffix": ".pdf"}]}}],
    )
    output_mode: Literal["cloudevent", "raw"] = Field(
        "cloudevent",
        description="cloudevent: results are structured CloudEvents carrying the correlation; "
        "raw: the bare result (correlation in message attributes only).",
    )
    claim_check: ClaimCheckFields | None = Field(
        None,
        description="Store results over a sink's limit (or over_bytes) in an object store "
        "and publish a reference to them instead of dead-lettering them.",
    )
    enabled: bool = Field(True, description="Disabled listeners are stored but not run.")


NodeListenerState = Literal["starting", "running", "paused", "degraded", "stopped", "standby"]


class NodeListenerOut(Schema):
    """One node's part of a listener's status."""

    node: str = Field(description="The node's id (see `GET /v1/nodes`).")
    address: str = Field(description="The URL the node serves on.")
    state: NodeListenerState = Field(
        description="The listener on this node: as the listener's `state`, or `standby` when "
        "its source cannot be shared and another node runs it (holds its lease)."
    )
    counters: dict[str, float] = Field(
        default_factory=dict, description="This node's figures, since its process started."
    )
    reason: str | None = Field(None, description="The last error on this node.")
    reason_at: float | None = Field(None, description="When it happened.")
    backlog: int | None = Field(
        None, description="The backlog as this node last read it (see the listener's)."
    )
    backlog_at: float | None = Field(None, description="When this node read it.")


class ListenerStatusOut(Schema):
    name: str
    state: Literal["starting", "running", "paused", "degraded", "stopped"] = Field(
        description="Over every live node: `degraded` while a part (source, a sink, the "
        "store) is failing on some node; else `running` if a node runs it; `paused` when "
        "disabled; `stopped` when no node runs it."
    )
    reason: str | None = Field(
        None,
        description="The last error (`part: what happened`), credentials redacted: this "
        "node's, else the latest of another node (`node ID: ...`).",
    )
    reason_at: float | None = Field(None, description="When the last error happened.")
    problems: dict[str, str] = Field(
        default_factory=dict,
        description="Failing parts and why, while degraded (another node's parts end with "
        "`(node ID)`).",
    )
    counters: dict[str, float] = Field(
        default_factory=dict,
        description="received, succeeded, retried, dead_lettered, skipped_*, in_flight, "
        "oldest_in_flight_age_s, latency_count, latency_sum_s: summed over the live nodes "
        "(`oldest_in_flight_age_s`: the largest), each since its process started.",
    )
    totals: dict[str, int] = Field(
        default_factory=dict,
        description="Run records of this listener by status (`succeeded`, `dead_lettered`, "
        "`retrying`, `running`) since it was created, counted in the store: the same on "
        "every node and unchanged by restarts (records pruned after the dedupe window stay "
        "counted). Read at most every few seconds.",
    )
    backlog: int | None = Field(
        None,
        description="Messages waiting at the source, as last read from the broker (every "
        "5 s; over several nodes, the freshest reading, not a sum): what each broker counts "
        "is listed in docs/listeners.md. None: not read yet, or the source cannot say "
        "(MQTT). A failed reading keeps the last value: see `backlog_at`.",
    )
    backlog_at: float | None = Field(
        None, description="When `backlog` was read (epoch seconds): its age shows staleness."
    )
    nodes: list[NodeListenerOut] = Field(
        default_factory=list,
        description="The per-node breakdown: the node that answers first, then every other "
        "live node that reported this listener (figures as of its last heartbeat).",
    )
    version: str | None = Field(
        None, description="The version the listener's model spec resolves to now."
    )
    version_error: str | None = Field(
        None, description="Why the spec resolves to nothing now (messages wait and retry)."
    )


class NodeOut(Schema):
    """A ``modelbus serve`` process on the store (`GET /v1/nodes`)."""

    id: str = Field(description="A new id every time the process starts.")
    state: Literal["live", "gone"] = Field(
        description="`live` while its heartbeats arrive; `gone` once it stopped, or sent none "
        "for the node timeout (`serve --node-timeout`)."
    )
    address: str = Field(description="The URL it serves the API on.")
    host: str = Field(description="The machine's name.")
    pid: int = Field(description="Its process id on that machine.")
    version: str = Field(description="The modelbus version it runs.")
    workers: int = Field(description="Its listener worker processes.")
    parent: str | None = Field(None, description="For a worker process: the node it belongs to.")
    started_at: float
    heartbeat_at: float = Field(description="Its last heartbeat (the database's clock).")
    heartbeat_age_s: float = Field(description="Seconds since its last heartbeat.")
    stopped_at: float | None = Field(None, description="When it stopped gracefully.")
    listeners_running: list[str] = Field(
        default_factory=list, description="The listeners it runs (running or degraded)."
    )
    listeners: list[NodeListenerOut] = Field(
        default_factory=list,
        description="Every listener it reported in its last heartbeat, with its state and "
        "counters there (`node` and `address` repeat the node's).",
    )
    this: bool = Field(False, description="This is the node that answered.")


class ListenerOut(Schema):
    name: str
    definition: ListenerFields = Field(
        description="The definition as stored: its URLs whole for a key that may manage the "
        "listener, else by their shape (`scheme://host:port/***?name=***`)."
    )
    status: ListenerStatusOut
    created_at: float
    updated_at: float


class ApplyRequest(Schema):
    listeners: list[ListenerFields] = Field(description="Every listener to create or update.")
    prune: bool = Field(False, description="Delete stored listeners that are not in the list.")


class ApplyOut(Schema):
    created: list[str] = Field(default_factory=list)
    updated: list[str] = Field(default_factory=list)
    unchanged: list[str] = Field(default_factory=list)
    deleted: list[str] = Field(default_factory=list)


class RunOut(Schema):
    listener: str
    message_id: str = Field(description="The broker's id of the message.")
    status: RunStatus
    attempts: int
    version: str | None = Field(None, description="The resolved version that ran (or failed).")
    output_id: str | None = Field(None, description="The result's id in the output sinks.")
    result_location: list[str] = Field(
        default_factory=list, description="The output sinks the result went to."
    )
    error: dict[str, Any] | None = Field(
        None, description="The last failure: type, message, permanent, stage."
    )
    duration_ms: float | None = None
    first_received_at: float
    updated_at: float
    finished_at: float | None = None
    object_key: str | None = Field(
        None,
        description="The object an object-created notification announced: BUCKET/KEY "
        "(S3), the file's path (dir://); null for other messages.",
        examples=["/srv/demo/inbox/page-1.png"],
    )


class RunPage(Schema):
    items: list[RunOut]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page.")


class DeadLetterOut(Schema):
    id: str
    listener: str
    message_id: str
    body_base64: str | None = Field(
        None, description="The original body, base64 (only on the single dead-letter route)."
    )
    body_size: int = Field(description="Bytes in the original body.")
    attributes: dict[str, str] = Field(description="The original attributes, untouched.")
    error_type: str
    error_message: str
    stacktrace: str = ""
    permanent: bool
    attempts: int
    model: str = Field(description="The listener's OWNER/NAME@SPEC when it failed.")
    version: str | None = Field(None, description="The resolved version that failed.")
    created_at: float
    redriven_at: float | None = None
    redriven_to: str | None = Field(None, description="The model reference it was redriven to.")
    object_key: str | None = Field(
        None,
        description="The object an object-created notification announced: BUCKET/KEY "
        "(S3), the file's path (dir://); null for other messages.",
        examples=["/srv/demo/inbox/page-1.png"],
    )


class DeadLetterPage(Schema):
    items: list[DeadLetterOut]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page.")


class RedriveRequest(Schema):
    # A misspelt field is refused: ignored, it would widen what runs again (``idss`` would
    # redrive every letter of the listener, ``sinse`` every letter the other filters match).
    model_config = ConfigDict(frozen=True, extra="forbid")

    ids: list[str] | None = Field(
        None, description="Dead letters to redrive (default: every one not redriven yet)."
    )
    spec: str | None = Field(
        None,
        description="Version spec to run them on, e.g. 1.2.* (default: the listener's own).",
        examples=["1.2.*"],
    )
    rate_per_s: float | None = Field(
        None,
        gt=0,
        le=MAX_REDRIVE_RATE_PER_S,
        description=f"Most redriven per second (default {DEFAULT_REDRIVE_RATE_PER_S:g}).",
    )


class DeadLetterSearch(Schema):
    """Which dead letters: every field left out matches everything."""

    listener: str | None = Field(None, description="Only this listener's letters.")
    message_id: str | None = Field(None, description="Only the letter of this broker message id.")
    object_key: str | None = Field(
        None,
        description="Only letters of this object: its whole BUCKET/KEY (or path) or a tail "
        "of it after a '/', e.g. page-1.png or inbox/page-1.png.",
    )
    since: datetime | None = Field(
        None, description="Dead-lettered at or after: ISO 8601 (UTC if no zone) or epoch s."
    )
    until: datetime | None = Field(
        None, description="Dead-lettered before: ISO 8601 (UTC if no zone) or epoch s."
    )
    include_redriven: bool = Field(False, description="Also letters redriven already.")


class SearchRedriveRequest(DeadLetterSearch):
    model_config = ConfigDict(frozen=True, extra="forbid")  # as RedriveRequest's

    all: bool = Field(
        False,
        description="Say that an empty search, every dead letter of every listener, is "
        "meant (refused otherwise).",
    )
    spec: str | None = Field(
        None,
        description="Version spec to run them on, e.g. 1.2.* (default: each listener's own).",
        examples=["1.2.*"],
    )
    rate_per_s: float | None = Field(
        None,
        gt=0,
        le=MAX_REDRIVE_RATE_PER_S,
        description=f"Most redriven per second, per listener (default "
        f"{DEFAULT_REDRIVE_RATE_PER_S:g}).",
    )


class RedriveOut(Schema):
    model: str = Field(description="The model reference the letters were run on.")
    redriven: list[str] = Field(default_factory=list, description="Ids that succeeded.")
    failed: dict[str, str] = Field(
        default_factory=dict, description="Ids that failed again, with the error."
    )


class SearchRedriveOut(Schema):
    matched: int = Field(description="How many dead letters matched the search.")
    listeners: dict[str, RedriveOut] = Field(
        default_factory=dict, description="Per listener: what was redriven and what failed."
    )


class ListenerHistoryOut(Schema):
    """A listener's last hour, per step, summed over every node (``GET
    /v1/listeners/{name}/history``). Every list has one entry per step, at ``times``."""

    name: str
    start: float = Field(description="Where the first step begins.")
    end: float = Field(description="Where the last step ends (a step every node sampled).")
    step_s: float = Field(description="Seconds per step.")
    times: list[float] = Field(description="The end of each step.")
    received_per_s: list[float] = Field(description="Deliveries received per second.")
    succeeded_per_s: list[float] = Field(description="Deliveries that succeeded per second.")
    retried_per_s: list[float] = Field(description="Deliveries released for a retry per second.")
    dead_lettered_per_s: list[float] = Field(description="Deliveries dead-lettered per second.")
    in_flight: list[float] = Field(
        description="Deliveries being processed at the end of the step (each node's last "
        "reading in the step, summed)."
    )
    backlog: list[float | None] = Field(
        description="Messages waiting at the source, as the broker last said in the step "
        "(the largest reading of the nodes); null when no node read it."
    )
    latency_p50_s: list[float | None] = Field(
        description="Median end-to-end latency of the deliveries settled in the step, from "
        "the latency histogram; null for a step with none."
    )
    latency_p99_s: list[float | None] = Field(
        description="99th percentile end-to-end latency in the step; null for a step with none."
    )
    totals: dict[str, float | None] = Field(
        description="Over the whole window: received, succeeded, retried, dead_lettered, "
        "latency_p50_s, latency_p99_s."
    )


class VersionHistoryOut(Schema):
    version: str = Field(
        description="The version number, or `#` and the build hash's first 12 characters for "
        "a build called by its hash."
    )
    calls_per_s: list[float] = Field(
        description="Inputs run per second (a batched runner call counts each of its inputs)."
    )
    errors_per_s: list[float] = Field(description="Inputs that ended in an error, per second.")
    duration_mean_s: list[float | None] = Field(
        description="Mean runner time per input in the step; null for a step with no input."
    )
    totals: dict[str, float | None] = Field(
        description="Over the whole window: calls, errors, duration_mean_s."
    )


class ModelHistoryOut(Schema):
    """A model's versions' last hour, per step, summed over every node (``GET
    /v1/models/{owner}/{name}/history``): only versions that ran something in the window."""

    model: str
    start: float
    end: float
    step_s: float
    times: list[float] = Field(description="The end of each step.")
    versions: list[VersionHistoryOut] = Field(description="Highest version first.")


# --- the flow map (GET /v1/flow) ---------------------------------------------------------

NodeKind = Literal["place", "listener", "model"]
EdgeKind = Literal["receive", "invoke", "result", "dead-letter"]
PlaceRole = Literal["source", "output", "dead-letter"]


class FlowNode(Schema):
    """A place, a listener or a model version, where the layout puts it."""

    id: str = Field(
        description="`listener:NAME`, `model:LISTENER`, or `place:N`: places numbered in "
        "the order the listeners (by name) name them, so the same while they do."
    )
    kind: NodeKind
    label: str = Field(description="A place's URL (by its shape), a listener's name, a model.")
    layer: int = Field(description="Column of the layered layout, 0 at the left.")
    row: int = Field(description="Place in its column, 0 at the top.")
    href: str | None = Field(None, description="The console page of a listener or model.")
    state: str | None = Field(
        None,
        description="A listener's state (`running`, `paused`, `degraded`, `starting`, "
        "`stopped`); a model's `resolved` or `unresolved`.",
    )
    reason: str | None = Field(
        None, description="Why a listener is degraded, or why a model spec does not resolve."
    )
    scheme: str | None = Field(None, description="A place's connector scheme.")
    urls: list[str] = Field(
        default_factory=list,
        description="A place: every spelling of its URL the listeners use, by its shape.",
    )
    roles: list[PlaceRole] = Field(
        default_factory=list, description="A place: what listeners use it as."
    )
    model: str | None = Field(None, description="A model node: `OWNER/NAME`.")
    spec: str | None = Field(None, description="A model node: the listener's version spec.")
    version: str | None = Field(None, description="A model node: the version it resolves to now.")
    listener: str | None = Field(None, description="A listener or model node: its listener.")


class FlowEdge(Schema):
    """Messages moving from one node to the next, for one listener."""

    id: str
    kind: EdgeKind = Field(
        description="`receive`: source -> listener (received); `invoke`: listener -> model "
        "(received and not skipped); `result`: model -> output sink (succeeded); "
        "`dead-letter`: listener -> error sink (dead-lettered)."
    )
    source: str = Field(description="The id of the node it leaves.")
    target: str = Field(description="The id of the node it enters.")
    listener: str
    messages: int = Field(
        description="Messages it carried since the listener's processes started, summed over "
        "the live nodes."
    )
    rate_per_s: float | None = Field(
        None,
        description="Messages per second over the last readings (up to 10 s); null until two "
        "readings at least 0.5 s apart were taken.",
    )
    backward: bool = Field(
        False, description="Part of a cycle, drawn right to left (the layout ignores it)."
    )


class FlowPipeline(Schema):
    """One hop of a pipeline: ``upstream`` publishes to a place ``downstream`` reads."""

    upstream: str
    downstream: str
    place: str = Field(description="The id of the place node they share.")
    dead_letters: bool = Field(
        False, description="The upstream's error sink (not an output) feeds the downstream."
    )


class FlowGraph(Schema):
    """Every listener's sources, model version and sinks as one graph."""

    at: float = Field(description="When the figures were read (epoch seconds).")
    nodes: list[FlowNode]
    edges: list[FlowEdge]
    pipelines: list[FlowPipeline]
    layers: int = Field(description="Number of columns in the layout.")
