"""Server settings, built in one place (:meth:`Settings.from_env`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

DEFAULT_DATA_DIR = ".modelbus"  # relative to the working directory
DEFAULT_PORT = 8470
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
DEFAULT_STOP_DEADLINE_S = 30.0


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
    ``artifacts_url``: the artifact store every node shares (``s3://BUCKET/PREFIX`` or a
    folder path; see :func:`modelbus.registry.artifacts.open_store`); default ``None``: the
    folder ``DATA_DIR/artifacts``, for one node.
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
    artifacts_url: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read ``MODELBUS_DATA_DIR``, ``MODELBUS_DATABASE_URL``, ``MODELBUS_HOST``,
        ``MODELBUS_PORT``, ``MODELBUS_MAX_BODY_BYTES``, ``MODELBUS_CONFIG`` (the listener
        file), ``MODELBUS_METRICS_PUBLIC`` (``1``/``true``), ``MODELBUS_SECRET_KEY``,
        ``MODELBUS_STOP_DEADLINE_S`` and ``MODELBUS_ARTIFACTS``; keyword overrides that are
        not None win (the CLI passes its flags this way)."""
        env = os.environ if env is None else env
        given_dir = overrides.pop("data_dir", None) or env.get(
            "MODELBUS_DATA_DIR", DEFAULT_DATA_DIR
        )
        data_dir = Path(given_dir).expanduser().resolve()
        default_db = f"sqlite:///{data_dir / 'modelbus.sqlite'}"
        settings = cls(
            data_dir=data_dir,
            database_url=env.get("MODELBUS_DATABASE_URL") or default_db,
            host=env.get("MODELBUS_HOST", "127.0.0.1"),
            port=int(env.get("MODELBUS_PORT", DEFAULT_PORT)),
            max_body_bytes=int(env.get("MODELBUS_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)),
            listeners_file=Path(env["MODELBUS_CONFIG"]) if env.get("MODELBUS_CONFIG") else None,
            metrics_public=env.get("MODELBUS_METRICS_PUBLIC", "").lower() in ("1", "true", "yes"),
            secret_key=env.get("MODELBUS_SECRET_KEY") or None,
            stop_deadline_s=float(env.get("MODELBUS_STOP_DEADLINE_S", DEFAULT_STOP_DEADLINE_S)),
            artifacts_url=env.get("MODELBUS_ARTIFACTS") or None,
        )
        given = {k: v for k, v in overrides.items() if v is not None}
        return replace(settings, **given) if given else settings
