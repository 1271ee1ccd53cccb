/**
 * The error tree of modelbus, as the Python SDK and the server name it (`modelbus.errors`).
 *
 * Every error the server reports is sent as `{"error": {"message", "error_type", "code", ...}}`;
 * `code` is the server's class name, and {@link errorFromDetail} raises the class of the same
 * name here (by HTTP status when the code is unknown), so callers write
 * `catch (e) { if (e instanceof VersionNotFound) ... }`, not `if (status === 404)`.
 *
 * ```
 * ModelbusError                      (also: the server cannot be reached)
 * ├── InvalidInput                   HTTP 400
 * │   ├── VersionSpecError
 * │   ├── ManifestError
 * │   ├── ArchiveError
 * │   └── DefinitionError
 * ├── PayloadTooLarge                HTTP 413
 * ├── UnsupportedContentType         HTTP 415
 * ├── NotFound                       HTTP 404
 * │   ├── ModelNotFound, VersionNotFound, BuildNotFound, JobNotFound,
 * │   └── ListenerNotFound, RunNotFound, DeadLetterNotFound
 * ├── Conflict                       HTTP 409
 * │   ├── VersionConflict
 * │   └── NodeRefused
 * ├── AuthError
 * │   ├── Unauthenticated            HTTP 401
 * │   └── Forbidden                  HTTP 403
 * ├── BuildError                     `log` holds the build log
 * ├── ArtifactError
 * │   ├── ArtifactUnavailable, ArtifactMissing, ArtifactCorrupt
 * ├── InvocationError                `errorType`, `stacktrace`, `permanent`, `version`
 * │   ├── ModelError                 the model raised (HTTP 400)
 * │   ├── InputRejected              the input failed the model's schema
 * │   ├── InvocationTimeout          HTTP 504
 * │   ├── RunnerCrashed              HTTP 502
 * │   └── Overloaded                 HTTP 503
 * ├── ConnectorError                 `permanent`
 * │   └── ConnectorConfigError
 * └── WaitTimeout                    (client side) `wait()` ran out of time
 * ```
 */

/** The inside of an error response's `error` member (the API's `ErrorDetail`). */
export interface ErrorDetail {
  /** What went wrong, fit for a user. */
  message: string;
  /** Short machine name; for a model error, the model's exception class. */
  error_type: string;
  /** The modelbus error class (`VersionNotFound`, ...). */
  code?: string;
  /** Invocation errors: the model's traceback, if any. */
  stacktrace?: string | null;
  /** Invocation errors: retrying cannot help. */
  permanent?: boolean | null;
  /** Invocation errors: the version that failed. */
  version?: string | null;
  /** Build errors: the build log. */
  log?: string | null;
}

/** Base of every modelbus error. `message` is fit for a user. */
export class ModelbusError extends Error {
  /** The HTTP status of the response, 0 when none (unreachable server, a job's error). */
  status = 0;
  /** The server's `error_type` (the class name, or a model's own exception class). */
  errorType: string;
  /** The error body the server sent, when there was one. */
  detail: ErrorDetail | undefined;
  /** Whether retrying the same request cannot help. */
  permanent = true;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.errorType = new.target.name;
  }
}

/** The caller sent something malformed. */
export class InvalidInput extends ModelbusError {}
/** A version or version spec does not parse. */
export class VersionSpecError extends InvalidInput {}
/** A model folder's `modelbus.toml` is missing or invalid. */
export class ManifestError extends InvalidInput {}
/** A model archive is unsafe or too large. */
export class ArchiveError extends InvalidInput {}
/** A listener definition is refused; the message says what to change. */
export class DefinitionError extends InvalidInput {}
/** A body is over the server's size limit. */
export class PayloadTooLarge extends ModelbusError {}
/** A body's content type is not one modelbus accepts there. */
export class UnsupportedContentType extends ModelbusError {}

/** The named thing does not exist. */
export class NotFound extends ModelbusError {}
export class ModelNotFound extends NotFound {}
export class VersionNotFound extends NotFound {}
export class BuildNotFound extends NotFound {}
export class JobNotFound extends NotFound {}
export class ListenerNotFound extends NotFound {}
export class RunNotFound extends NotFound {}
export class DeadLetterNotFound extends NotFound {}

/** The request conflicts with what is stored (a listener name taken, ...). */
export class Conflict extends ModelbusError {}
/** A version number that exists already was pushed with different content. */
export class VersionConflict extends Conflict {}
/** A server cannot join the nodes of its store. */
export class NodeRefused extends Conflict {}

export class AuthError extends ModelbusError {}
/** No key, an unknown key or a revoked key. */
export class Unauthenticated extends AuthError {}
/** The key is valid but lacks the scope for this request. */
export class Forbidden extends AuthError {}

/** Building a model version failed; `log` is the full build log. */
export class BuildError extends ModelbusError {
  log = "";
}

/** A build's archive could not be stored in or had from the artifact store. */
export class ArtifactError extends ModelbusError {}
/** The artifact store cannot be reached now (transient). */
export class ArtifactUnavailable extends ArtifactError {
  override permanent = false;
}
export class ArtifactMissing extends ArtifactError {}
export class ArtifactCorrupt extends ArtifactError {}

/**
 * One invocation failed. `errorType` is a short machine name (`ModelError`, the model's own
 * exception class, ...), `stacktrace` the model's traceback when there is one, `version` the
 * resolved version that failed, `permanent` whether a retry cannot help.
 */
export class InvocationError extends ModelbusError {
  override permanent = false;
  stacktrace = "";
  version: string | null = null;
}
/** The model raised an exception (permanent only if the model marked it so). */
export class ModelError extends InvocationError {}
/** The input does not match the model's input schema (permanent). */
export class InputRejected extends InvocationError {
  override permanent = true;
}
/** The call ran past its timeout; the runner was replaced (transient). */
export class InvocationTimeout extends InvocationError {}
/** The runner process died during the call (transient). */
export class RunnerCrashed extends InvocationError {}
/** The version's pool cannot take more calls now (transient). */
export class Overloaded extends InvocationError {}

/** A broker operation failed; transient unless `permanent`. */
export class ConnectorError extends ModelbusError {
  override permanent = false;
}
/** A connector cannot work as configured: bad URL, credentials, missing queue, missing extra. */
export class ConnectorConfigError extends ConnectorError {
  override permanent = true;
}

/** Client side: `wait()` gave up on a job that had not finished in time. */
export class WaitTimeout extends ModelbusError {
  override permanent = false;
}

type ErrorClass = new (message: string) => ModelbusError;

// The server's class names (its `code`), each to the class of the same name here.
const BY_CODE: Record<string, ErrorClass> = Object.fromEntries(
  [
    ModelbusError, InvalidInput, VersionSpecError, ManifestError, ArchiveError,
    DefinitionError, PayloadTooLarge, UnsupportedContentType, NotFound, ModelNotFound,
    VersionNotFound, BuildNotFound, JobNotFound, ListenerNotFound, RunNotFound,
    DeadLetterNotFound, Conflict, VersionConflict, NodeRefused, AuthError, Unauthenticated,
    Forbidden, BuildError, ArtifactError, ArtifactUnavailable, ArtifactMissing,
    ArtifactCorrupt, InvocationError, ModelError, InputRejected, InvocationTimeout,
    RunnerCrashed, Overloaded, ConnectorError, ConnectorConfigError,
  ].map((cls) => [cls.name, cls]),
);
// An optional client library missing on the server is a configuration error to the caller.
BY_CODE["MissingExtra"] = ConnectorConfigError;

const BY_STATUS: Record<number, ErrorClass> = {
  400: InvalidInput,
  401: Unauthenticated,
  403: Forbidden,
  404: NotFound,
  409: Conflict,
  413: PayloadTooLarge,
  415: UnsupportedContentType,
  422: InvalidInput,
  502: RunnerCrashed,
  503: Overloaded,
  504: InvocationTimeout,
};

// The HTTP status the server answers each class with, most specific first (its status_for).
const STATUS_OF: [ErrorClass, number][] = [
  [PayloadTooLarge, 413], [UnsupportedContentType, 415], [InvalidInput, 400], [NotFound, 404],
  [Conflict, 409], [Unauthenticated, 401], [Forbidden, 403], [BuildError, 422],
  [ArtifactUnavailable, 503], [ArtifactError, 500], [InputRejected, 400], [ModelError, 400],
  [InvocationTimeout, 504], [RunnerCrashed, 502], [Overloaded, 503], [InvocationError, 500],
  [ConnectorConfigError, 400], [ConnectorError, 502],
];

/** The HTTP status the server gives `error`'s class (500 for one it does not know). */
export function statusOf(error: ModelbusError): number {
  return STATUS_OF.find(([cls]) => error instanceof cls)?.[1] ?? 500;
}

/**
 * The error an error body describes: the class named by its `code`, else the one for the
 * HTTP `status`, else `fallback`.
 */
export function errorFromDetail(
  detail: ErrorDetail,
  status: number,
  fallback: ErrorClass = ModelbusError,
): ModelbusError {
  const cls = (detail.code && BY_CODE[detail.code]) || BY_STATUS[status] || fallback;
  const error = new cls(detail.message);
  error.status = status;
  error.detail = detail;
  error.errorType = detail.error_type || error.errorType;
  if (typeof detail.permanent === "boolean") error.permanent = detail.permanent;
  if (error instanceof InvocationError) {
    error.stacktrace = detail.stacktrace ?? "";
    error.version = detail.version ?? null;
  }
  if (error instanceof BuildError) error.log = detail.log ?? "";
  return error;
}

/** The error for an error response, whatever its body (even one that is not modelbus's). */
export function errorFromResponse(status: number, body: string): ModelbusError {
  const detail = errorBody(body);
  if (detail) return errorFromDetail(detail, status);
  return errorFromDetail({ message: body.trim() || `HTTP ${status}`, error_type: `HTTP${status}` }, status);
}

function errorBody(body: string): ErrorDetail | undefined {
  try {
    const parsed: unknown = JSON.parse(body);
    const error = (parsed as { error?: unknown } | null)?.error;
    if (error && typeof error === "object" && typeof (error as ErrorDetail).message === "string") {
      return error as ErrorDetail;
    }
  } catch {
    // Not JSON: a proxy's page, a plain-text error. Its text is the message.
  }
  return undefined;
}
