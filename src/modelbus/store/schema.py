"""The store's one schema (SQLAlchemy Core), shared by SQLite and PostgreSQL.

Alembic migrations under ``modelbus/migrations`` create and evolve it; tests may use
``metadata.create_all`` on a scratch database. Times are seconds since the epoch (float),
which both databases store and compare the same way.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# --- registry ------------------------------------------------------------------------------

models = Table(
    "models",
    metadata,
    Column("owner", String(100), primary_key=True),
    Column("name", String(100), primary_key=True),
    Column("description", Text, nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    # what a management client said about the model beyond its description (Algorithmia's
    # details and settings), stored as given and shown back
    Column("details", JSON, nullable=True),
)

builds = Table(
    "builds",
    metadata,
    Column("hash", String(80), primary_key=True),  # "sha256:<hex>" of the artifact
    Column("owner", String(100), nullable=False),
    Column("name", String(100), nullable=False),
    Column("env_hash", String(80), nullable=True),  # the cached environment it runs in
    Column("status", String(16), nullable=False),  # building | ready | failed
    Column("manifest", JSON, nullable=False),
    Column("log", Text, nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    Column("finished_at", Float, nullable=True),
    Index(None, "owner", "name"),
)

versions = Table(
    "versions",
    metadata,
    Column("owner", String(100), primary_key=True),
    Column("name", String(100), primary_key=True),
    Column("version", String(40), primary_key=True),  # "1.2.3"
    Column("major", Integer, nullable=False),
    Column("minor", Integer, nullable=False),
    Column("patch", Integer, nullable=False),
    Column("build_hash", String(80), ForeignKey("builds.hash"), nullable=False),
    Column("published", Boolean, nullable=False, default=True),
    Column("created_at", Float, nullable=False),
    # what the publisher said about the version (release notes, sample input and output)
    Column("details", JSON, nullable=True),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(40), primary_key=True),  # public part of the key, shown in listings
    Column("name", String(200), nullable=False, default=""),
    Column("secret_hash", String(128), nullable=False),
    Column("scopes", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("last_used_at", Float, nullable=True),
    Column("revoked_at", Float, nullable=True),
)

# A console login: the hash of the session id its cookie carries, until it ends (logout,
# its key revoked) or expires. A cookie whose row is gone, ended or expired is refused.
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("id", String(64), primary_key=True),  # sha256 hex of the session id
    Column("key_id", String(40), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("ended_at", Float, nullable=True),
    Index(None, "key_id"),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("owner", String(100), nullable=False),
    Column("name", String(100), nullable=False),
    Column("spec", String(80), nullable=False),
    Column("version", String(40), nullable=True),
    Column("status", String(16), nullable=False),  # queued | running | succeeded | failed
    Column("input_data", LargeBinary, nullable=False),
    Column("input_content_type", String(16), nullable=False),
    Column("input_mime", String(200), nullable=True),
    Column("timeout_s", Float, nullable=True),
    Column("output_data", LargeBinary, nullable=True),
    Column("output_content_type", String(16), nullable=True),
    Column("output_mime", String(200), nullable=True),
    Column("error", JSON, nullable=True),
    Column("duration_ms", Float, nullable=True),
    Column("key_id", String(40), nullable=True),
    # Which server process holds the job, and until when (renewed by its heartbeat); a job
    # whose lease ran out is re-run by another process (jobs survive restarts and crashes).
    Column("claimed_by", String(100), nullable=True),
    Column("lease_expires_at", Float, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    Index(None, "status"),
)

# --- listeners ------------------------------------------------------------------------------

listeners = Table(
    "listeners",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("definition", JSON, nullable=False),  # credentials inside are encrypted
    Column("enabled", Boolean, nullable=False, default=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("listener", String(100), primary_key=True),
    Column("message_id", String(512), primary_key=True),
    Column("status", String(16), nullable=False),  # running | retrying | succeeded | dead_lettered
    Column("attempts", Integer, nullable=False),
    Column("version", String(40), nullable=True),
    Column("output_id", String(200), nullable=True),
    Column("result_location", Text, nullable=True),
    Column("error", JSON, nullable=True),
    Column("duration_ms", Float, nullable=True),
    Column("first_received_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("finished_at", Float, nullable=True),
    # The run claim: who runs the message now, and until when (database clock) unless renewed.
    Column("claimed_by", String(100), nullable=True),
    Column("claim_expires_at", Float, nullable=True),
    # The object an object-created notification announced (S3 or dir://): BUCKET/KEY, for a
    # folder the file's path; what `runs list --object-key` and `runs get FILE` look up.
    Column("object_key", String(1024), nullable=True),
    Index(None, "message_id"),
    Index(None, "finished_at"),
    Index(None, "updated_at"),
    Index(None, "object_key"),
)

# What :meth:`modelbus.store.runs.RunStore.prune` forgot, per listener and final status, so
# that a listener's totals (records kept + records pruned) never go down.
run_totals = Table(
    "run_totals",
    metadata,
    Column("listener", String(100), primary_key=True),
    Column("status", String(16), primary_key=True),
    Column("count", Integer, nullable=False),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("listener", String(100), nullable=False),
    Column("message_id", String(512), nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("attributes", JSON, nullable=False),
    Column("error_type", String(200), nullable=False),
    Column("error_message", Text, nullable=False),
    Column("stacktrace", Text, nullable=False, default=""),
    Column("permanent", Boolean, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("model", String(300), nullable=False),  # owner/name@spec as the listener said
    Column("version", String(40), nullable=True),  # the resolved version that failed
    Column("created_at", Float, nullable=False),
    Column("redriven_at", Float, nullable=True),
    Column("redriven_to", String(300), nullable=True),
    Column("object_key", String(1024), nullable=True),  # as runs.object_key
    Index(None, "listener", "created_at"),
    Index(None, "created_at"),
    Index(None, "object_key"),
)

# --- nodes ----------------------------------------------------------------------------------

# Every ``modelbus serve`` process on the store is a node; it writes its row at start and its
# heartbeat (with the status of its listeners) every few seconds. Times come from the
# database's clock (see modelbus/store/nodes.py), so nodes with skewed clocks still agree.
nodes = Table(
    "nodes",
    metadata,
    Column("id", String(40), primary_key=True),  # a new uuid every process start
    Column("parent", String(40), nullable=True),  # a worker process: the node that started it
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("address", String(500), nullable=False),  # the URL it serves the API on
    Column("version", String(40), nullable=False),  # modelbus's version
    Column("workers", Integer, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
    Column("stopped_at", Float, nullable=True),  # set by a graceful stop
    Column("listeners", JSON, nullable=False),  # name -> {state, counters, ...}
    Index(None, "heartbeat_at"),
)

# Which node runs a listener whose source cannot be shared (``local://``, ``dir://``...),
# until when: claimed and renewed atomically (modelbus/store/leases.py).
listener_leases = Table(
    "listener_leases",
    metadata,
    Column("listener", String(100), primary_key=True),
    Column("owner", String(40), nullable=False),  # nodes.id
    Column("acquired_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
)

# --- figure history -------------------------------------------------------------------------

# What each process (serve node or worker) counted between two of its samples, per listener
# and per model version, kept for an hour (modelbus/store/history.py): the console's charts
# sum it over nodes. ``kind`` is ``listener`` (``name`` the listener) or ``version``
# (``name`` the model OWNER/NAME, ``part`` the version); times are the writer's clock.
figure_history = Table(
    "figure_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("node", String(40), nullable=False),  # nodes.id of the process that counted
    Column("kind", String(16), nullable=False),
    Column("name", String(300), nullable=False),
    Column("part", String(100), nullable=False, default=""),
    Column("since", Float, nullable=False),  # the counts are of (since, at]
    Column("at", Float, nullable=False),
    Column("figures", JSON, nullable=False),
    Index(None, "kind", "name", "at"),
    Index(None, "at"),
)
