"""The one error tree of modelbus.

Every exception modelbus raises on purpose is one of these. Client libraries' exceptions
(botocore, sqlite3, asyncpg, ...) are translated at the edge that calls them
(``raise ConnectorError(...) from exc``), so callers only ever catch names from this module.

::

    ModelbusError
    ├── InvalidInput                  the caller sent something malformed (HTTP 400)
    │   ├── VersionSpecError          "1.x.foo" is not a version or version spec
    │   ├── ManifestError             a model folder's modelbus.toml is missing or wrong
    │   ├── ArchiveError              a model archive is unsafe or too large
    │   └── DefinitionError           a listener definition is refused (says what to change)
    │       └── PolicyRefused         a connector would reach what the operator does not allow
    ├── PayloadTooLarge               body over the configured size limit (HTTP 413)
    ├── UnsupportedContentType        (HTTP 415)
    ├── NotFound                      (HTTP 404)
    │   ├── ModelNotFound
    │   ├── VersionNotFound
    │   ├── BuildNotFound
    │   ├── JobNotFound
    │   ├── ListenerNotFound
    │   ├── UserNotFound
    │   ├── RunNotFound
    │   └── DeadLetterNotFound
    ├── Conflict                      (HTTP 409)
    │   ├── VersionConflict           the version number exists with other content
    │   └── NodeRefused               this server cannot join the store's nodes (says why)
    ├── AuthError
    │   ├── Unauthenticated           no key, unknown key, revoked key (HTTP 401)
    │   └── Forbidden                 the key lacks the scope (HTTP 403)
    ├── BuildError                    the build failed; ``log`` holds the build log
    ├── ArtifactError                 a build's archive cannot be had from the artifact store
    │   ├── ArtifactUnavailable       the store cannot be reached or refused us (transient, 503)
    │   ├── ArtifactMissing           the store has no archive for the build (500)
    │   └── ArtifactCorrupt           the archive does not match its content hash (500)
    ├── InvocationError               one call of a model failed; ``permanent`` classifies it
    │   ├── ModelError                the model raised (permanent if the model marked it so)
    │   ├── InputRejected             the input failed the model's input schema (permanent)
    │   ├── InvocationTimeout         the call ran past its timeout; runner replaced (transient)
    │   ├── RunnerCrashed             the runner process died during the call (transient)
    │   └── Overloaded                the pool's queue is full (transient)
    └── ConnectorError                a broker call failed (transient unless ``permanent``)
        ├── ConnectorConfigError      bad URL, bad credentials, missing queue (permanent)
        └── MissingExtra              an optional client library is not installed

Transient vs permanent (DESIGN.md, delivery contract point 2) is carried by the
``permanent`` attribute, so the listener runtime decides retry or dead-letter from the
exception alone.
"""

from __future__ import annotations


class ModelbusError(Exception):
    """Base of every modelbus error. ``str(exc)`` is a message fit for a user."""

    permanent: bool = True

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(ModelbusError):
    """The caller sent something malformed."""


class VersionSpecError(InvalidInput):
    """A version or version spec does not parse."""


class ManifestError(InvalidInput):
    """A model folder's ``modelbus.toml`` is missing or invalid."""


class ArchiveError(InvalidInput):
    """A model archive is unsafe (path traversal, symlink out) or too large."""


class DefinitionError(InvalidInput):
    """A listener definition is refused; the message says what to change."""


class PolicyRefused(DefinitionError):
    """A connector would reach what the operator's policy does not allow (a folder outside
    the ``dir://`` roots or in the data directory); the message names the setting."""


class PayloadTooLarge(ModelbusError):
    """A body is over the configured size limit."""


class UnsupportedContentType(ModelbusError):
    """A body's content type is not one modelbus accepts there."""


class NotFound(ModelbusError):
    """The named thing does not exist."""


class ModelNotFound(NotFound):
    pass


class VersionNotFound(NotFound):
    pass


class BuildNotFound(NotFound):
    pass


class JobNotFound(NotFound):
    pass


class ListenerNotFound(NotFound):
    pass


class UserNotFound(NotFound):
    """No user (owner of models or listeners) has this id."""


class RunNotFound(NotFound):
    pass


class DeadLetterNotFound(NotFound):
    pass


class Conflict(ModelbusError):
    """The request conflicts with what is stored."""


class VersionConflict(Conflict):
    """A version number that exists already was pushed with different content."""


class NodeRefused(Conflict):
    """A ``modelbus serve`` cannot join the nodes of its store: a second node on a SQLite
    store, or a secret key that cannot decrypt the stored credentials. The message says what
    to change."""


class AuthError(ModelbusError):
    pass


class Unauthenticated(AuthError):
    """No key, an unknown key or a revoked key."""


class Forbidden(AuthError):
    """The key is valid but lacks the scope for this request."""


class BuildError(ModelbusError):
    """Building a model version failed. ``log`` is the full build log."""

    def __init__(self, message: str, *, log: str = "") -> None:
        super().__init__(message)
        self.log = log


class ArtifactError(ModelbusError):
    """A build's archive could not be stored in or had from the artifact store (the folder
    or S3 bucket every node shares). The message names the store and, where known, the
    model version."""


class ArtifactUnavailable(ArtifactError):
    """The artifact store cannot be reached now, or refused the request (network down,
    bucket missing, access denied). Transient: the same call may succeed later."""

    permanent = False


class ArtifactMissing(ArtifactError):
    """The artifact store has no archive for a build the database knows (deleted from the
    bucket, or the nodes do not share one store). Pushing the version again restores it."""


class ArtifactCorrupt(ArtifactError):
    """An archive read from the artifact store does not match its content hash; it is
    refused, and nothing of it is unpacked or built."""


class InvocationError(ModelbusError):
    """One invocation failed.

    ``error_type`` is a short machine name (``ModelError``, ``TimeoutError``, the model's own
    exception class name...), ``stacktrace`` the model's traceback when there is one.
    """

    permanent = False

    def __init__(
        self,
        message: str,
        *,
        error_type: str | None = None,
        stacktrace: str = "",
        permanent: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.error_type = error_type or type(self).__name__
        self.stacktrace = stacktrace
        # The resolved version that failed, stamped by the invoker (dead letters carry it).
        self.version: str | None = None
        if permanent is not None:
            self.permanent = permanent


class ModelError(InvocationError):
    """The model raised an exception. Permanent only if the model marked it permanent."""


class InputRejected(InvocationError):
    """The input does not match the model's input schema."""

    permanent = True


class InvocationTimeout(InvocationError):
    """The call ran past its timeout; the runner was killed and replaced."""


class RunnerCrashed(InvocationError):
    """The runner process exited or was killed during the call."""


class Overloaded(InvocationError):
    """The version's pool cannot take more calls now."""


class ConnectorError(ModelbusError):
    """A broker operation failed. Transient unless ``permanent`` is set."""

    permanent = False

    def __init__(self, message: str, *, permanent: bool | None = None) -> None:
        super().__init__(message)
        if permanent is not None:
            self.permanent = permanent


class ConnectorConfigError(ConnectorError):
    """The connector cannot work as configured: bad URL, credentials, missing queue."""

    permanent = True


class MissingExtra(ConnectorError):
    """An optional client library (a broker's, or boto3 for the S3 artifact store) is not
    installed; the message gives the install hint."""

    permanent = True

    def __init__(self, extra: str, module: str) -> None:
        super().__init__(
            f"the {module!r} package is needed for this feature: pip install 'modelbus[{extra}]'"
        )
        self.extra = extra
