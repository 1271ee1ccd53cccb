/**
 * {@link Client}: every operation of the modelbus HTTP API, over the platform's `fetch`.
 *
 * Each method sends one request (`push` reads a progress stream, `wait` polls) and gives the
 * typed answer, or throws the {@link ModelbusError} subclass the server's error names.
 */

import {
  errorFromDetail,
  errorFromResponse,
  type ErrorDetail,
  InvalidInput,
  ModelbusError,
  statusOf,
  WaitTimeout,
} from "./errors.js";
import { type ModelRef, parseRef } from "./refs.js";
import { CallResult, Job } from "./results.js";
import type {
  ApplyResult,
  BuildInfo,
  Bump,
  CallEnvelope,
  CreatedKey,
  DeadLetter,
  DeadLetterPage,
  FlowGraph,
  Health,
  JobInfo,
  KeyInfo,
  Listener,
  ListenerDefinition,
  ListenerHistory,
  ListenerStatus,
  ModelHistory,
  ModelInfo,
  NodeInfo,
  PushInfo,
  RedriveResult,
  Run,
  RunPage,
  RunStatus,
  SearchRedriveResult,
  VersionInfo,
} from "./types.js";

/** Where `modelbus serve` listens by default. */
export const DEFAULT_URL = "http://127.0.0.1:8470";
/** Bound on every request that sets no timeout of its own, in seconds. */
export const DEFAULT_TIMEOUT_S = 600;
// Time allowed beyond a call's own timeout for the server to answer with its 504.
const TIMEOUT_MARGIN_S = 30;
const REDRIVE_TIMEOUT_S = 24 * 3600;

export interface ClientOptions {
  /** The server's URL; default `MODELBUS_URL` (under Node), else {@link DEFAULT_URL}. */
  url?: string;
  /** The API key, sent as `Authorization: Bearer KEY`; default `MODELBUS_API_KEY` (under Node). */
  key?: string;
  /** Bound on every request that sets no timeout of its own; default {@link DEFAULT_TIMEOUT_S}. */
  timeoutS?: number;
  /** The `fetch` to use (default: the global one). */
  fetch?: typeof fetch;
}

/** A model input: bytes are sent as binary, a string as text, anything else as JSON. */
export type Input = unknown;
/** A request body as `fetch` takes it. */
export type RequestBody = string | Blob | ArrayBuffer | ArrayBufferView;
/** `json`, `text`, `binary`, or a MIME type sent as `Content-Type` as it is. */
export type ContentType = "json" | "text" | "binary" | (string & {});

export interface CallOptions {
  /** Overrides how `data` is sent (bytes are sent as they are, a string as UTF-8). */
  contentType?: ContentType;
  /** Seconds before the call is abandoned; default the version's own timeout. */
  timeoutS?: number;
  /** Include what the model printed (`CallResult.stdout`). */
  stdout?: boolean;
}

export interface SubmitOptions {
  contentType?: ContentType;
  timeoutS?: number;
}

export interface WaitOptions {
  /** Give up (throw {@link WaitTimeout}) after this many seconds; default 60. */
  timeoutS?: number;
  /** Seconds between polls; default 0.2. */
  pollS?: number;
}

/** A model archive to push: a `.tar.gz` (or `.tar`) of the folder holding `modelbus.toml`. */
export interface ModelArchive {
  owner: string;
  name: string;
  archive: Uint8Array | Blob;
}

export interface PushOptions {
  /** The version to record (`1.2.3`). */
  version?: string;
  /** Record the next major/minor/patch version after the model's highest. */
  bump?: Bump;
  /** Serve it by version spec at once; default true. */
  publish?: boolean;
  /** Receives each line of build output as it happens. */
  onLog?: (line: string) => void;
}

export interface PublishOptions {
  /** Build hash or unique prefix (default: the newest ready build). */
  build?: string;
  version?: string;
  bump?: Bump;
}

export interface PageOptions {
  /** Items per page; default 50. */
  limit?: number;
  /** The `next_cursor` of the previous page. */
  cursor?: string;
}

export interface CheckOptions {
  /** Have the server open the listener's connectors before storing it; default true. */
  check?: boolean;
}

export interface RedriveOptions {
  /** Dead letters to redrive; default every one not redriven yet. */
  ids?: string[];
  /** Version spec to run them on; default the listener's own. */
  spec?: string;
  /** Most redriven per second. */
  ratePerS?: number;
}

/** A time for a search: epoch seconds, an ISO 8601 text (UTC if it names no zone) or a `Date`. */
export type Moment = number | string | Date;

/**
 * What the searches of runs and dead letters are narrowed to (`GET /v1/runs`,
 * `GET /v1/dead-letters`, `POST /v1/dead-letters/redrive`); a filter left out matches anything.
 */
export interface SearchFilters {
  /** Only this listener's. */
  listener?: string;
  /** Only those of this broker message id. */
  messageId?: string;
  /**
   * Only those of this object (S3 or `dir://` notifications): its whole `BUCKET/KEY` or file
   * path, or a tail of it after a `/` (`page-1.png`, `inbox/page-1.png`). Case-sensitive.
   */
  objectKey?: string;
  /** At or after this time (runs: last updated; dead letters: dead-lettered). */
  since?: Moment;
  /** Before this time. */
  until?: Moment;
}

export interface SearchRunsOptions extends SearchFilters, PageOptions {
  /** Only records in this state. */
  status?: RunStatus;
}

export interface SearchDeadLettersOptions extends SearchFilters, PageOptions {
  /** Also letters redriven already; default true. */
  includeRedriven?: boolean;
}

export interface RedriveMatchingOptions extends SearchFilters {
  /** Also letters redriven already; default false. */
  includeRedriven?: boolean;
  /** Say that no filter at all, every dead letter of every listener, is meant (refused otherwise). */
  all?: boolean;
  /** Version spec to run them on; default each listener's own. */
  spec?: string;
  /** Most redriven per second, per listener. */
  ratePerS?: number;
}

export interface HistoryOptions {
  /** How far back, in seconds (10 to 3600); default 3600. */
  windowS?: number;
  /** Seconds per step (1 to 600, at most the window); default 10. */
  stepS?: number;
}

type Query = Record<string, string | number | boolean | undefined | null>;

interface Request {
  method: string;
  path: string;
  query?: Query;
  body?: RequestBody;
  json?: unknown;
  headers?: Record<string, string>;
  /** Seconds; null: no timeout (a push's build may take long). */
  timeoutS?: number | null;
}

const MEDIA: Record<string, string> = {
  json: "application/json",
  text: "text/plain; charset=utf-8",
  binary: "application/octet-stream",
};

/**
 * The modelbus client. Every method returns a promise; errors the server reports are thrown
 * as the classes of `errors` ({@link VersionNotFound}, {@link ModelError} with the model's
 * `stacktrace`, {@link Unauthenticated}, ...); a server that cannot be reached or does not
 * answer in time throws a plain {@link ModelbusError} saying which URL.
 */
export class Client {
  /** The server's base URL, without a trailing slash. */
  readonly url: string;
  readonly timeoutS: number;
  readonly #key: string | undefined;
  readonly #fetch: typeof fetch;

  constructor(options: ClientOptions = {}) {
    this.url = (options.url ?? env("MODELBUS_URL") ?? DEFAULT_URL).replace(/\/+$/, "");
    this.#key = options.key ?? env("MODELBUS_API_KEY");
    this.timeoutS = options.timeoutS ?? DEFAULT_TIMEOUT_S;
    this.#fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  }

  // --- invocations ---------------------------------------------------------------------------

  /**
   * Run one input on `owner/name[@spec]` and wait for its result. `data`: bytes
   * (`Uint8Array`, `ArrayBuffer`, `Blob`) are sent as binary, a string as text, anything else
   * as JSON, unless `contentType` says otherwise. Throws the model's {@link ModelError},
   * {@link InvocationTimeout}, {@link VersionNotFound}, ...
   */
  async call(ref: string | ModelRef, data: Input, options: CallOptions = {}): Promise<CallResult> {
    const [body, media] = encodeInput(data, options.contentType);
    const response = await this.#send({
      method: "POST",
      path: modelPath(ref) + "/invoke",
      query: { stdout: options.stdout ? "true" : undefined, timeout: options.timeoutS },
      body,
      headers: { "Content-Type": media },
      timeoutS: options.timeoutS === undefined ? undefined : options.timeoutS + TIMEOUT_MARGIN_S,
    });
    return new CallResult((await response.json()) as CallEnvelope);
  }

  /** Queue one input to run in the background; resolves at once with the queued job. */
  async submit(ref: string | ModelRef, data: Input, options: SubmitOptions = {}): Promise<Job> {
    const [body, media] = encodeInput(data, options.contentType);
    const response = await this.#send({
      method: "POST",
      path: modelPath(ref) + "/jobs",
      query: { timeout: options.timeoutS },
      body,
      headers: { "Content-Type": media },
    });
    return new Job((await response.json()) as JobInfo);
  }

  /** The job's current state; throws {@link JobNotFound}. */
  async job(jobId: string): Promise<Job> {
    return new Job(await this.#get<JobInfo>(`/v1/jobs/${seg(jobId)}`));
  }

  /**
   * Poll until the job has finished and return it (see {@link Job.unwrap}); throws
   * {@link WaitTimeout} if it is still queued or running after `timeoutS` (default 60).
   */
  async wait(jobId: string, options: WaitOptions = {}): Promise<Job> {
    const timeoutS = options.timeoutS ?? 60;
    const deadline = Date.now() + timeoutS * 1000;
    for (;;) {
      const job = await this.job(jobId);
      if (job.done) return job;
      if (Date.now() > deadline) {
        throw new WaitTimeout(`job ${jobId} still ${job.status} after ${timeoutS}s`);
      }
      await sleep((options.pollS ?? 0.2) * 1000);
    }
  }

  // --- models, versions, builds ------------------------------------------------------------

  /**
   * Upload a model archive and build it; record a version and publish it. `version` or `bump`
   * names the version; with neither, the push is a build callable by its hash only
   * (`PushInfo.version` is null). A repeated push of the same content is a no-op. Throws
   * {@link BuildError} (with its `log`), {@link ManifestError}, {@link VersionConflict}, ...
   * Under Node, `packModel(folder)` from `modelbus/node` makes the archive.
   */
  async push(model: ModelArchive, options: PushOptions = {}): Promise<PushInfo> {
    const response = await this.#send({
      method: "POST",
      path: `/v1/models/${seg(model.owner)}/${seg(model.name)}/versions`,
      query: {
        publish: options.publish ?? true,
        version: options.version,
        bump: options.bump,
      },
      body: model.archive,
      headers: { "Content-Type": "application/gzip", Accept: "application/x-ndjson" },
      timeoutS: null,
    });
    for await (const line of lines(response)) {
      const event = JSON.parse(line) as PushEvent;
      if (event.event === "log") options.onLog?.(event.line ?? "");
      if (event.event === "error" && event.error) throw streamedError(event.error);
      if (event.event === "result" && event.result) return event.result;
    }
    throw new ModelbusError("the push stream ended without a result");
  }

  /**
   * Publish `version`, or give `build` (default: the newest ready build) the version
   * `version` or the next `bump` one, published. Idempotent.
   */
  async publish(owner: string, name: string, options: PublishOptions = {}): Promise<VersionInfo> {
    const json = { build: options.build ?? null, version: options.version ?? null, bump: options.bump ?? null };
    return this.#json({ method: "POST", path: `/v1/models/${seg(owner)}/${seg(name)}/publish`, json });
  }

  /** The models this key may see. */
  async models(): Promise<ModelInfo[]> {
    return this.#get("/v1/models");
  }

  /** One model; throws {@link ModelNotFound}. */
  async model(owner: string, name: string): Promise<ModelInfo> {
    return this.#get(`/v1/models/${seg(owner)}/${seg(name)}`);
  }

  /** The versions of a model, highest first. */
  async versions(owner: string, name: string): Promise<VersionInfo[]> {
    return this.#get(`/v1/models/${seg(owner)}/${seg(name)}/versions`);
  }

  /** The builds of a model, newest first (without logs). */
  async builds(owner: string, name: string): Promise<BuildInfo[]> {
    return this.#get(`/v1/models/${seg(owner)}/${seg(name)}/builds`);
  }

  /** One build with its log, by hash or unique prefix; throws {@link BuildNotFound}. */
  async build(buildHash: string): Promise<BuildInfo> {
    return this.#get(`/v1/builds/${seg(buildHash)}`);
  }

  /**
   * A model's last hour per version that ran something: calls, errors and mean duration per
   * step, summed over every node. Throws {@link ModelNotFound}; needs a key that may see the model.
   */
  async modelHistory(owner: string, name: string, options: HistoryOptions = {}): Promise<ModelHistory> {
    return this.#get(`/v1/models/${seg(owner)}/${seg(name)}/history`, history(options));
  }

  // --- keys ----------------------------------------------------------------------------------

  /** A new API key (admin only); its secret is in the answer and never shown again. */
  async createKey(name: string, scopes: string[]): Promise<CreatedKey> {
    return this.#json({ method: "POST", path: "/v1/keys", json: { name, scopes } });
  }

  /** All API keys, without their secrets (admin only). */
  async keys(): Promise<KeyInfo[]> {
    return this.#get("/v1/keys");
  }

  /** Revoke a key; it stops working at once (admin only). */
  async revokeKey(keyId: string): Promise<KeyInfo> {
    return this.#json({ method: "DELETE", path: `/v1/keys/${seg(keyId)}` });
  }

  // --- listeners -----------------------------------------------------------------------------

  /** Every listener with its status (credentials shown as `***`). */
  async listeners(): Promise<Listener[]> {
    return this.#get("/v1/listeners");
  }

  /** One listener; throws {@link ListenerNotFound}. */
  async listener(name: string): Promise<Listener> {
    return this.#get(`/v1/listeners/${seg(name)}`);
  }

  /**
   * Create a listener; it starts at once if enabled. Throws {@link DefinitionError} (saying
   * what to change) or {@link Conflict} when the name is taken. Needs `listeners:manage`.
   */
  async createListener(definition: ListenerDefinition, options: CheckOptions = {}): Promise<Listener> {
    return this.#json({ method: "POST", path: "/v1/listeners", query: check(options), json: definition });
  }

  /**
   * Create or replace one listener; it restarts only if its definition changed. `***` where
   * the stored definition has a credential keeps that credential.
   */
  async putListener(definition: ListenerDefinition, options: CheckOptions = {}): Promise<Listener> {
    const path = `/v1/listeners/${seg(definition.name || "-")}`;
    return this.#json({ method: "PUT", path, query: check(options), json: definition });
  }

  /**
   * Create or update several listeners (a listener file); `prune` deletes the stored ones not
   * given. Nothing is stored if one of them is refused.
   */
  async applyListeners(
    definitions: ListenerDefinition[],
    options: CheckOptions & { prune?: boolean } = {},
  ): Promise<ApplyResult> {
    const json = { listeners: definitions, prune: options.prune ?? false };
    return this.#json({ method: "PUT", path: "/v1/listeners", query: check(options), json });
  }

  /** Stop and delete a listener; its run records and dead letters are kept. */
  async deleteListener(name: string): Promise<void> {
    await this.#send({ method: "DELETE", path: `/v1/listeners/${seg(name)}` });
  }

  /** Stop a listener gracefully; it stays paused across restarts. Idempotent. */
  async pauseListener(name: string): Promise<Listener> {
    return this.#json({ method: "POST", path: `/v1/listeners/${seg(name)}/pause` });
  }

  /** Start a paused listener again. Idempotent. */
  async resumeListener(name: string): Promise<Listener> {
    return this.#json({ method: "POST", path: `/v1/listeners/${seg(name)}/resume` });
  }

  /** State, last error, counters and the version its spec resolves to now. */
  async listenerStatus(name: string): Promise<ListenerStatus> {
    return this.#get(`/v1/listeners/${seg(name)}/status`);
  }

  /**
   * A listener's last hour per step, summed over every node: received, succeeded, retried and
   * dead-lettered per second, in flight, backlog, latency p50/p99. The last step is the last
   * one every node has sampled (up to a heartbeat interval behind). Throws {@link ListenerNotFound}.
   */
  async listenerHistory(name: string, options: HistoryOptions = {}): Promise<ListenerHistory> {
    return this.#get(`/v1/listeners/${seg(name)}/history`, history(options));
  }

  /**
   * Every listener as one graph: its source and sink places, the listener, the model version
   * its spec resolves to, the messages and rate of each hop, and the pipelines where one
   * listener's output is another's source. URLs are shown by their shape.
   */
  async flow(): Promise<FlowGraph> {
    return this.#get("/v1/flow");
  }

  // --- runs and dead letters -----------------------------------------------------------------

  /**
   * What happened to broker message `messageId` (one record per listener that received it);
   * throws {@link RunNotFound}.
   */
  async runs(messageId: string, options: { listener?: string } = {}): Promise<Run[]> {
    return this.#get(`/v1/runs/${seg(messageId)}`, { listener: options.listener });
  }

  /** A page of a listener's run records, most recently updated first. */
  async listenerRuns(name: string, options: PageOptions & { status?: RunStatus } = {}): Promise<RunPage> {
    return this.#get(`/v1/listeners/${seg(name)}/runs`, { ...page(options), status: options.status });
  }

  /** A page of a listener's dead letters, newest first (without bodies). */
  async deadLetters(
    listener: string,
    options: PageOptions & { includeRedriven?: boolean } = {},
  ): Promise<DeadLetterPage> {
    const query = { ...page(options), include_redriven: options.includeRedriven ?? true };
    return this.#get(`/v1/listeners/${seg(listener)}/dead-letters`, query);
  }

  /**
   * A page of the run records of every listener, most recently updated first, narrowed by the
   * filters given (see {@link SearchFilters}).
   */
  async searchRuns(options: SearchRunsOptions = {}): Promise<RunPage> {
    return this.#get("/v1/runs", { ...search(options), ...page(options), status: options.status });
  }

  /** Every run record {@link searchRuns} finds, page after page (`limit` per request). */
  async *eachRun(options: SearchRunsOptions = {}): AsyncGenerator<Run> {
    yield* following(options.cursor, (cursor) => this.searchRuns({ ...options, cursor }));
  }

  /**
   * A page of the dead letters of every listener, newest first (without bodies), narrowed as
   * {@link searchRuns} (the time is when they were dead-lettered).
   */
  async searchDeadLetters(options: SearchDeadLettersOptions = {}): Promise<DeadLetterPage> {
    const query = { ...search(options), ...page(options), include_redriven: options.includeRedriven ?? true };
    return this.#get("/v1/dead-letters", query);
  }

  /** Every dead letter {@link searchDeadLetters} finds, page after page (`limit` per request). */
  async *eachDeadLetter(options: SearchDeadLettersOptions = {}): AsyncGenerator<DeadLetter> {
    yield* following(options.cursor, (cursor) => this.searchDeadLetters({ ...options, cursor }));
  }

  /**
   * Run again every dead letter the filters match (not redriven yet, unless `includeRedriven`),
   * listener by listener, each on its model at `spec` (default its own); resolves once all were
   * tried. No filter at all is refused ({@link InvalidInput}) unless `all` says every letter of
   * every listener is meant. Needs `listeners:manage`, and `call` on every listener's model.
   */
  async redriveMatching(options: RedriveMatchingOptions): Promise<SearchRedriveResult> {
    const json = {
      ...search(options),
      include_redriven: options.includeRedriven ?? false,
      all: options.all ?? false,
      spec: options.spec ?? null,
      rate_per_s: options.ratePerS ?? null,
    };
    return this.#json({ method: "POST", path: "/v1/dead-letters/redrive", json, timeoutS: REDRIVE_TIMEOUT_S });
  }

  /** One dead letter with its original body (`body_base64`); needs `listeners:manage`. */
  async deadLetter(letterId: string): Promise<DeadLetter> {
    return this.#get(`/v1/dead-letters/${seg(letterId)}`);
  }

  /**
   * Run dead letters again on the listener's model at `spec` (default its own); resolves once
   * all were tried. Needs `listeners:manage`.
   */
  async redrive(listener: string, options: RedriveOptions = {}): Promise<RedriveResult> {
    const json = { ids: options.ids ?? null, spec: options.spec ?? null, rate_per_s: options.ratePerS ?? null };
    const path = `/v1/listeners/${seg(listener)}/dead-letters/redrive`;
    return this.#json({ method: "POST", path, json, timeoutS: REDRIVE_TIMEOUT_S });
  }

  /**
   * The AsyncAPI 3.0 document describing every listener: its source, output and error
   * channels, message payloads and broker bindings (`GET /v1/asyncapi.json`; any valid key).
   */
  async asyncapi(): Promise<Record<string, unknown>> {
    return this.#get("/v1/asyncapi.json");
  }

  // --- the server ----------------------------------------------------------------------------

  /** The nodes sharing the server's store: the live ones, then (with `gone`) those gone lately. */
  async nodes(options: { gone?: boolean } = {}): Promise<NodeInfo[]> {
    return this.#get("/v1/nodes", { gone: options.gone ?? true });
  }

  /** The server's Prometheus metrics, as text. */
  async metrics(): Promise<string> {
    return (await this.#send({ method: "GET", path: "/metrics" })).text();
  }

  /** The liveness probe (no key needed). */
  async health(): Promise<Health> {
    return this.#get("/health");
  }

  // --- the request layer ---------------------------------------------------------------------

  async #get<T>(path: string, query?: Query): Promise<T> {
    return this.#json({ method: "GET", path, query });
  }

  async #json<T>(request: Request): Promise<T> {
    return (await (await this.#send(request)).json()) as T;
  }

  /** Send one request; throws the error an error response stands for. */
  async #send(request: Request): Promise<Response> {
    const headers: Record<string, string> = { ...request.headers };
    if (this.#key) headers["Authorization"] = `Bearer ${this.#key}`;
    let body = request.body;
    if (request.json !== undefined) {
      body = JSON.stringify(request.json);
      headers["Content-Type"] = "application/json";
    }
    const timeoutS = request.timeoutS === undefined ? this.timeoutS : request.timeoutS;
    const url = this.url + request.path + queryString(request.query);
    let response: Response;
    try {
      response = await this.#fetch(url, {
        method: request.method,
        headers,
        body: (body ?? null) as BodyInit | null,
        signal: timeoutS === null ? null : AbortSignal.timeout(timeoutS * 1000),
      });
    } catch (error) {
      throw unreachable(this.url, timeoutS, error);
    }
    if (!response.ok) throw errorFromResponse(response.status, await response.text());
    return response;
  }
}

interface PushEvent {
  event: "log" | "result" | "error";
  line?: string | null;
  result?: PushInfo | null;
  error?: ErrorDetail | null;
}

// An error inside a push's stream (the response itself was a 200): given the status the
// server answers that error with elsewhere, so `status` means the same on every error.
function streamedError(detail: ErrorDetail): ModelbusError {
  const error = errorFromDetail(detail, 422);
  error.status = statusOf(error);
  return error;
}

/** Body and `Content-Type` for a model input (see {@link Client.call}). */
export function encodeInput(data: Input, contentType?: ContentType): [RequestBody, string] {
  const binary = isBytes(data);
  const kind = contentType ?? (binary ? "binary" : typeof data === "string" ? "text" : "json");
  const media = MEDIA[kind] ?? kind;
  if (binary) return [data as RequestBody, media];
  if (kind === "json") {
    const text = JSON.stringify(data);
    if (text === undefined) throw new InvalidInput(`${typeof data} cannot be sent as JSON`);
    return [text, media];
  }
  if (typeof data === "string") return [data, media];
  throw new InvalidInput(`a ${kind} input must be a string or bytes, not ${typeof data}`);
}

function isBytes(data: unknown): boolean {
  return (
    data instanceof ArrayBuffer ||
    ArrayBuffer.isView(data) ||
    (typeof Blob !== "undefined" && data instanceof Blob)
  );
}

function modelPath(ref: string | ModelRef): string {
  const r = typeof ref === "string" ? parseRef(ref) : ref;
  const base = `/v1/models/${seg(r.owner)}/${seg(r.name)}`;
  return r.spec === "latest" ? base : `${base}/versions/${seg(r.spec)}`;
}

/** One path segment, escaped (broker message ids may hold '/', '?', '#' or spaces). */
function seg(text: string): string {
  return encodeURIComponent(text);
}

function queryString(query: Query | undefined): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query ?? {})) {
    if (value !== undefined && value !== null) params.set(key, String(value));
  }
  const text = params.toString();
  return text ? `?${text}` : "";
}

function check(options: CheckOptions): Query {
  return { check: options.check ?? true };
}

function page(options: PageOptions): Query {
  return { limit: options.limit ?? 50, cursor: options.cursor };
}

/** The query parameters (or JSON fields) of the filters given. */
function search(filters: SearchFilters): Query {
  return {
    listener: filters.listener,
    message_id: filters.messageId,
    object_key: filters.objectKey,
    since: moment(filters.since),
    until: moment(filters.until),
  };
}

function moment(at: Moment | undefined): string | undefined {
  if (at === undefined || typeof at === "string") return at;
  return at instanceof Date ? at.toISOString() : String(at);
}

function history(options: HistoryOptions): Query {
  return { window_s: options.windowS, step_s: options.stepS };
}

/** The items of page after page, from `cursor`, following each page's `next_cursor`. */
async function* following<T>(
  cursor: string | undefined,
  read: (cursor: string | undefined) => Promise<{ items: T[]; next_cursor: string | null }>,
): AsyncGenerator<T> {
  for (;;) {
    const current = await read(cursor);
    yield* current.items;
    if (!current.next_cursor) return;
    cursor = current.next_cursor;
  }
}

function unreachable(url: string, timeoutS: number | null, error: unknown): ModelbusError {
  const name = (error as { name?: string } | null)?.name;
  if (name === "TimeoutError") {
    return new ModelbusError(`the modelbus server at ${url} did not answer within ${timeoutS}s`, { cause: error });
  }
  const cause = (error as { cause?: { message?: string } } | null)?.cause?.message;
  const reason = cause ?? (error instanceof Error ? error.message : String(error));
  return new ModelbusError(`cannot reach the modelbus server at ${url}: ${reason}`, { cause: error });
}

/** The non-blank lines of a streamed body, as they arrive. */
async function* lines(response: Response): AsyncGenerator<string> {
  if (!response.body) return;
  const decoder = new TextDecoder();
  const reader = response.body.getReader();
  let buffered = "";
  for (;;) {
    const { done, value } = await reader.read();
    buffered += done ? decoder.decode() : decoder.decode(value, { stream: true });
    const parts = buffered.split("\n");
    buffered = done ? "" : (parts.pop() ?? "");
    for (const part of parts) if (part.trim()) yield part;
    if (done) return;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function env(name: string): string | undefined {
  const process = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process;
  return process?.env?.[name] || undefined;
}
