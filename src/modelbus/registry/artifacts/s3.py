"""An artifact store in an S3 bucket (AWS, MinIO, any S3-compatible store), for several nodes.

URL (``serve --artifacts``)::

    s3://BUCKET/PREFIX?region=eu-west-1&endpoint_url=http://minio:9000&profile=NAME

Every query option is optional; without one, boto3's usual settings apply: the endpoint from
``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` (else AWS), the region from
``AWS_REGION`` / ``AWS_DEFAULT_REGION`` or the profile, and credentials from the environment
(``AWS_ACCESS_KEY_ID``...), the shared files, or an instance / pod role. Credentials never go
in the URL. The bucket must exist; the nodes need ``s3:GetObject``, ``s3:PutObject``,
``s3:ListBucket`` on it.

Objects are written with one PUT (or a multipart upload, completed in one step): S3 shows a
whole object or none. Calls are bounded by connect and read timeouts and a few retries
(:class:`S3StoreSettings`). Needs boto3: ``pip install 'modelbus[s3]'``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from modelbus.errors import ArtifactMissing, ArtifactUnavailable, InvalidInput, MissingExtra
from modelbus.registry.artifacts.archives import hex_digest
from modelbus.registry.artifacts.base import (
    LOGS_FOLDER,
    archive_name,
    log_bytes,
    log_name,
    node_of,
)

__all__ = ["S3Store", "S3StoreSettings"]

URL_OPTIONS = frozenset({"region", "endpoint_url", "profile"})
# At most this many node logs are read for one build (a cluster of more nodes is unlikely).
MAX_LOGS = 100
_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})


@dataclass(frozen=True, kw_only=True, slots=True)
class S3StoreSettings:
    """An ``s3://BUCKET/PREFIX`` URL, parsed (see the module docstring for its options).

    ``prefix`` is empty or ends with ``/``. Every call gets ``connect_timeout_s`` and
    ``read_timeout_s``, and is tried ``max_attempts`` times in all (botocore's standard
    retry mode, with backoff).
    """

    bucket: str
    prefix: str = ""
    region: str | None = None
    endpoint_url: str | None = None
    profile: str | None = None
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 60.0
    max_attempts: int = 3

    @classmethod
    def from_url(cls, url: str) -> S3StoreSettings:
        """Parse ``url``; raises :class:`InvalidInput` saying what is wrong with it."""
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.hostname:
            raise InvalidInput(f"not an S3 artifact store URL: {url!r} (s3://BUCKET/PREFIX)")
        if parts.username or parts.password:
            raise InvalidInput(
                "credentials do not go in the artifact store URL: use AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, a profile (?profile=NAME) or the instance's role"
            )
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        unknown = sorted(set(query) - URL_OPTIONS)
        if unknown:
            allowed = ", ".join(sorted(URL_OPTIONS))
            raise InvalidInput(f"unknown S3 artifact store option(s) {unknown} (known: {allowed})")
        prefix = parts.path.strip("/")
        return cls(
            bucket=parts.netloc,
            prefix=f"{prefix}/" if prefix else "",
            region=query.get("region") or None,
            endpoint_url=query.get("endpoint_url") or None,
            profile=query.get("profile") or None,
        )


class S3Store:
    """Archives and logs under ``s3://BUCKET/PREFIX`` (see :class:`~.base.ArtifactStore`).

    Raises :class:`MissingExtra` at once when boto3 is not installed. The client is made on
    first use and shared by every thread (boto3 clients are thread-safe).
    """

    def __init__(self, settings: S3StoreSettings) -> None:
        _require_boto3()
        self.settings = settings
        self._clients: dict[int, Any] = {}  # by attempts per call
        self._lock = threading.Lock()

    def describe(self) -> str:
        where = f"s3://{self.settings.bucket}/{self.settings.prefix}"
        endpoint = self.settings.endpoint_url
        if endpoint is None and self._clients:
            endpoint = str(next(iter(self._clients.values())).meta.endpoint_url)
        return f"{where} at {endpoint}" if endpoint else where

    def check(self) -> None:
        # Tried once: a health probe wants the state of the store now, not after backoffs.
        with self._translated("cannot reach the bucket"):
            self._s3(attempts=1).head_bucket(Bucket=self.settings.bucket)

    def exists(self, digest: str) -> bool:
        key = self._key(archive_name(digest))
        try:
            with self._translated(f"cannot look up the archive of build {digest}", digest):
                self._s3().head_object(Bucket=self.settings.bucket, Key=key)
        except ArtifactMissing:
            return False
        return True

    def put(self, digest: str, archive: Path) -> None:
        if self.exists(digest):
            return
        extra = {"ContentType": "application/gzip", "Metadata": {"content-hash": digest}}
        with self._translated(f"cannot upload the archive of build {digest}"):
            self._s3().upload_file(
                str(archive), self.settings.bucket, self._key(archive_name(digest)), extra
            )

    def download(self, digest: str, dest: Path) -> None:
        key = self._key(archive_name(digest))
        try:
            with self._translated(f"cannot download the archive of build {digest}", digest):
                self._s3().download_file(self.settings.bucket, key, str(dest))
        except ArtifactMissing:
            self.check()  # a missing bucket answers 404 too: that is an outage, not a loss
            raise ArtifactMissing(
                f"the artifact store ({self.describe()}) has no archive of build {digest}"
            ) from None

    def put_log(self, digest: str, node: str, text: str) -> None:
        with self._translated(f"cannot store the build log of {digest}"):
            self._s3().put_object(
                Bucket=self.settings.bucket,
                Key=self._key(log_name(digest, node)),
                Body=log_bytes(text),
                ContentType="text/plain; charset=utf-8",
            )

    def logs(self, digest: str) -> dict[str, str]:
        prefix = self._key(f"{LOGS_FOLDER}/{hex_digest(digest)}/")
        found: dict[str, str] = {}
        with self._translated(f"cannot read the build logs of {digest}"):
            s3 = self._s3()
            listing = s3.list_objects_v2(
                Bucket=self.settings.bucket, Prefix=prefix, MaxKeys=MAX_LOGS
            )
            for item in listing.get("Contents", []):
                body = s3.get_object(Bucket=self.settings.bucket, Key=item["Key"])["Body"]
                with contextlib.closing(body):
                    found[node_of(item["Key"])] = body.read().decode(errors="replace")
        return found

    def _key(self, name: str) -> str:
        return self.settings.prefix + name

    def _s3(self, *, attempts: int | None = None) -> Any:
        """The client whose calls are tried ``attempts`` times (default: the settings')."""
        attempts = attempts or self.settings.max_attempts
        with self._lock:
            if attempts not in self._clients:
                self._clients[attempts] = self._new_client(attempts)
            return self._clients[attempts]

    def _new_client(self, attempts: int) -> Any:
        import boto3
        from botocore.config import Config

        settings = self.settings
        session = boto3.session.Session(profile_name=settings.profile)
        config = Config(
            connect_timeout=settings.connect_timeout_s,
            read_timeout=settings.read_timeout_s,
            retries={"max_attempts": attempts, "mode": "standard"},
        )
        return session.client(
            "s3", region_name=settings.region, endpoint_url=settings.endpoint_url, config=config
        )

    @contextlib.contextmanager
    def _translated(self, what: str, digest: str | None = None) -> Iterator[None]:
        """botocore's and boto3's errors as ours: a missing object (when ``digest`` names
        one) as :class:`ArtifactMissing`, everything else as :class:`ArtifactUnavailable`."""
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            if digest is not None and code in _MISSING:
                raise ArtifactMissing(f"no archive of build {digest}") from None
            reason = f"{code}: {error.get('Message') or exc}" if code else str(exc)
            raise self._unavailable(what, reason) from None
        except (BotoCoreError, Boto3Error) as exc:
            raise self._unavailable(what, str(exc)) from None

    def _unavailable(self, what: str, reason: str) -> ArtifactUnavailable:
        return ArtifactUnavailable(f"the artifact store ({self.describe()}): {what}: {reason}")


def _require_boto3() -> None:
    try:
        import boto3  # noqa: F401
    except ImportError:
        raise MissingExtra("s3", "boto3") from None
