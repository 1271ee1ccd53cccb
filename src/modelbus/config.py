"""Server settings, built in one place (:meth:`Settings.from_env`)."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

DEFAULT_DATA_DIR = ".modelbus"  # relative to the working directory
DEFAULT_PORT = 8470
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
DEFAULT_STOP_DEADLINE_S = 30.0
DEFAULT_HEARTBEAT_INTERVAL_S = 5.0
DEFAULT_NODE_TIMEOUT_S = 15.0


def default_workers() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells it, else
    ``os.cpu_count()``), at least 1: the default number of ``serve`` processes running
    listeners. A container's CPU quota is not seen here: set ``--workers`` to it."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores)


@dataclass(frozen=True, kw_only=True, slots=True)
class Settings:
    """Everything ``modelbus serve`` needs.

    ``database_url`` defaults to a SQLite file in ``data_dir``; a ``postgresql://`` URL puts
    the store in PostgreSQL (several nodes share one).

    ``listeners_file``: a TOML listener file applied at start (created or updated; with
    ``prune_listeners`` stored listeners absent from it are deleted). ``metrics_public``:
    ``/metrics`` answers without an API key. ``secret_key``: the key(s) encrypting broker
    credentials (default: ``DATA_DIR/secret.key``, see :mod:`modelbus.store.secrets`).
    ``stop_deadline_s``: how long a graceful stop lets in-flight messages finish.

    Nodes (several servers on one PostgreSQL store): ``advertise_url`` is the URL this node
    is listed with (default ``http://HOST:PORT``, the machine's name for a wildcard host);
    it writes a heartbeat every ``heartbeat_interval_s``; a node silent for
    ``node_timeout_s`` is gone, and that is also how long a listener lease lasts unrenewed
    (a listener that runs on one node at a time moves to another within
    ``node_timeout_s + heartbeat_interval_s`` of its node's death). The interval must be at
    most half the timeout. ``ignore_undecryptable``: start even if stored broker credentials
    cannot be decrypted with ``secret_key`` (refused otherwise: another key is in use).
    ``artifacts_url``: the artifact store every node shares (``s3://BUCKET/PREFIX`` or a
    folder path; see :func:`modelbus.registry.artifacts.open_store`); default ``None``: the
    folder ``DATA_DIR/artifacts``, for one node. ``allow_direct_requirements``: builds may
    install requirements given as a URL or path (``pkg @ https://...``, ``pkg @ file:///...``);
    refused by default.

    ``workers``: how many processes run listeners (at least 1): the serve process itself,
    plus ``workers - 1`` worker processes that run listeners only (see
    :mod:`modelbus.web.supervisor`). :meth:`from_env` defaults it to the cores
    (:func:`default_workers`); a Settings built directly runs one process.

    ``dir_roots``: the folders ``dir://`` sources and sinks must lie in (never the data
    directory, a folder holding it or one inside it; see
    :func:`modelbus.connectors.directory.check_folder`). :meth:`from_env` defaults it to the
    working directory ``serve`` starts in (:func:`dir_roots_of`); a Settings built directly
    has none (None: only the data-directory rule applies).

    ``allow_hosts``: the egress policy's allow list (CIDRs, addresses, host patterns; see
    :mod:`modelbus.connectors.egress`): link-local and cloud metadata addresses and this
    server's own API are always refused, loopback unless listed. :meth:`from_env` defaults
    it to an empty list (the policy on, loopback refused); a Settings built directly has
    None: no egress policy.
    """

    data_dir: Path
    database_url: str
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    listeners_file: Path | None = None
    prune_listeners: bool = False
    metrics_public: bool = False
    secret_key: str | None = field(default=None, repr=False)
    stop_deadline_s: float = DEFAULT_STOP_DEADLINE_S
    advertise_url: str | None = None
    heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S
    node_timeout_s: float = DEFAULT_NODE_TIMEOUT_S
    ignore_undecryptable: bool = False
    artifacts_url: str | None = None
    workers: int = 1
    allow_direct_requirements: bool = False
    dir_roots: tuple[Path, ...] | None = None
    allow_hosts: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(
                f"workers must be a whole number of processes, at least 1 (not {self.workers!r})"
            )
        if not 0 < 2 * self.heartbeat_interval_s <= self.node_timeout_s:
            raise ValueError(
                f"the heartbeat interval ({self.heartbeat_interval_s:g} s) must be positive "
                f"and at most half the node timeout ({self.node_timeout_s:g} s)"
            )

    @property
    def node_address(self) -> str:
        """The URL this node is listed with (``advertise_url``, else ``http://HOST:PORT``)."""
        if self.advertise_url:
            return self.advertise_url
        host = self.host
        if host in ("", "0.0.0.0", "::"):
            host = socket.gethostname()
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def to_json(self) -> str:
        """Every setting as one line of JSON, for :meth:`from_json` in a worker process. It
        holds the secret key: hand it over through a pipe, never an argument or a file."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        if self.dir_roots is not None:
            values["dir_roots"] = [str(root) for root in self.dir_roots]
        return json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in values.items()})

    @classmethod
    def from_json(cls, text: str) -> Settings:
        """The settings :meth:`to_json` wrote; raises ValueError for anything else."""
        values = json.loads(text)
        if not isinstance(values, dict):
            raise ValueError("settings JSON must be an object")
        for name in ("data_dir", "listeners_file"):
            if values.get(name) is not None:
                values[name] = Path(values[name])
        if values.get("dir_roots") is not None:
            values["dir_roots"] = tuple(Path(root) for root in values["dir_roots"])
        if values.get("allow_hosts") is not None:
            values["allow_hosts"] = tuple(values["allow_hosts"])
        return cls(**values)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read ``MODELBUS_DATA_DIR``, ``MODELBUS_DATABASE_URL``, ``MODELBUS_HOST``,
        ``MODELBUS_PORT``, ``MODELBUS_MAX_BODY_BYTES``, ``MODELBUS_CONFIG`` (the listener
        file), ``MODELBUS_METRICS_PUBLIC`` (``1``/``true``), ``MODELBUS_SECRET_KEY``,
        ``MODELBUS_STOP_DEADLINE_S``, ``MODELBUS_ARTIFACTS``, ``MODELBUS_ADVERTISE_URL``,
        ``MODELBUS_HEARTBEAT_INTERVAL_S``, ``MODELBUS_NODE_TIMEOUT_S``,
        ``MODELBUS_ALLOW_DIRECT_REQUIREMENTS`` (``1``/``true``), ``MODELBUS_WORKERS``
        (default :func:`default_workers`), ``MODELBUS_DIR_ROOTS`` (see :func:`dir_roots_of`)
        and ``MODELBUS_ALLOW_HOSTS`` (see :func:`allow_hosts_of`); keyword overrides that
        are not None win (the CLI passes its flags this way). Raises ValueError for a
        heartbeat interval over half the node timeout, or workers that are not a whole
        number of at least 1."""
        env = os.environ if env is None else env
        given_dir = overrides.pop("data_dir", None) or env.get(
            "MODELBUS_DATA_DIR", DEFAULT_DATA_DIR
        )
        data_dir = Path(given_dir).expanduser().resolve()
        default_db = f"sqlite:///{data_dir / 'modelbus.sqlite'}"
        values: dict[str, Any] = dict(
            data_dir=data_dir,
            database_url=env.get("MODELBUS_DATABASE_URL") or default_db,
            host=env.get("MODELBUS_HOST", "127.0.0.1"),
            port=int(env.get("MODELBUS_PORT", DEFAULT_PORT)),
            max_body_bytes=int(env.get("MODELBUS_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)),
            listeners_file=Path(env["MODELBUS_CONFIG"]) if env.get("MODELBUS_CONFIG") else None,
            metrics_public=env.get("MODELBUS_METRICS_PUBLIC", "").lower() in ("1", "true", "yes"),
            secret_key=env.get("MODELBUS_SECRET_KEY") or None,
            stop_deadline_s=float(env.get("MODELBUS_STOP_DEADLINE_S", DEFAULT_STOP_DEADLINE_S)),
            advertise_url=env.get("MODELBUS_ADVERTISE_URL") or None,
            heartbeat_interval_s=float(
                env.get("MODELBUS_HEARTBEAT_INTERVAL_S", DEFAULT_HEARTBEAT_INTERVAL_S)
            ),
            node_timeout_s=float(env.get("MODELBUS_NODE_TIMEOUT_S", DEFAULT_NODE_TIMEOUT_S)),
            artifacts_url=env.get("MODELBUS_ARTIFACTS") or None,
            workers=_workers(env.get("MODELBUS_WORKERS")),
            allow_direct_requirements=env.get("MODELBUS_ALLOW_DIRECT_REQUIREMENTS", "").lower()
            in ("1", "true", "yes"),
            dir_roots=dir_roots_of(env.get("MODELBUS_DIR_ROOTS")),
            allow_hosts=allow_hosts_of(env.get("MODELBUS_ALLOW_HOSTS")),
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def dir_roots_of(text: str | None) -> tuple[Path, ...]:
    """``MODELBUS_DIR_ROOTS`` (or one ``--dir-roots`` value) as absolute folders: a list
    separated by ``:`` (``;`` on Windows) like ``PATH``; unset or empty: the working directory."""
    given = [part for part in (text or "").split(os.pathsep) if part.strip()]
    if not given:
        return (Path.cwd().resolve(),)
    return tuple(Path(part.strip()).expanduser().resolve() for part in given)


def allow_hosts_of(text: str | None) -> tuple[str, ...]:
    """``MODELBUS_ALLOW_HOSTS`` (or one ``--allow-hosts`` value): CIDRs, addresses and host
    patterns separated by commas or spaces (``127.0.0.1/32,*.corp.example``)."""
    return tuple(part for part in (text or "").replace(",", " ").split() if part)


def _workers(text: str | None) -> int:
    """``MODELBUS_WORKERS`` as a number (unset or empty: :func:`default_workers`)."""
    if text is None or not text.strip():
        return default_workers()
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(
            f"MODELBUS_WORKERS must be a whole number of processes, at least 1 (not {text!r})"
        ) from None
