/**
 * The JSON shapes of the modelbus HTTP API, as the server sends them (snake_case, as in its
 * OpenAPI document at `/openapi.json`). Times are seconds since the epoch.
 */

import type { ErrorDetail } from "./errors.js";

export type ContentTypeName = "json" | "text" | "binary";
export type JobStatus = "queued" | "running" | "succeeded" | "failed";
export type Bump = "major" | "minor" | "patch";

/** A successful call as the server sends it (`CallEnvelope`). */
export interface CallEnvelope {
  /** JSON value, text, or base64 text for binary results. */
  result: unknown;
  metadata: {
    content_type: ContentTypeName;
    /** Seconds the model took. */
    duration: number;
    version?: string | null;
    mime?: string | null;
    stdout?: string | null;
  };
}

export interface JobInfo {
  id: string;
  status: JobStatus;
  owner: string;
  name: string;
  spec: string;
  version?: string | null;
  created_at: number;
  started_at?: number | null;
  finished_at?: number | null;
  result?: CallEnvelope | null;
  error?: ErrorDetail | null;
}

export interface ModelInfo {
  owner: string;
  name: string;
  description: string;
  created_at: number;
  /** Newest published version, if any. */
  latest_version: string | null;
}

export interface VersionInfo {
  owner: string;
  name: string;
  /** Semantic version, MAJOR.MINOR.PATCH. */
  version: string;
  /** Content hash of the build this version runs. */
  build: string;
  /** Served by version specs (latest, 1.*, ...). */
  published: boolean;
  created_at: number;
}

export interface BuildInfo {
  /** Content hash of the model artifact (sha256:...). */
  hash: string;
  owner: string;
  name: string;
  status: "building" | "ready" | "failed";
  env_hash: string | null;
  created_at: number;
  finished_at: number | null;
  /** Versions pointing at it. */
  versions: string[];
  /** Its modelbus.toml. */
  manifest: Record<string, unknown>;
  /** The build log (on the single-build route only). */
  log: string | null;
  node_logs?: Record<string, string> | null;
}

export interface PushInfo {
  owner: string;
  name: string;
  /** The version recorded; null for a build pushed without a version, callable by hash. */
  version: string | null;
  build: string;
  published: boolean;
  /** False when the same push was made before (a no-op). */
  created: boolean;
  /** A build ran for this push. */
  built: boolean;
  env_reused: boolean;
}

export interface KeyInfo {
  id: string;
  name: string;
  scopes: string[];
  created_at: number;
  last_used_at: number | null;
  revoked_at: number | null;
}

export interface CreatedKey {
  /** The secret, shown this once. */
  key: string;
  info: KeyInfo;
}

export interface RetryPolicy {
  max_attempts?: number;
  initial_backoff_s?: number;
  max_backoff_s?: number;
  multiplier?: number;
  jitter?: number;
}

export interface BatchPolicy {
  max_batch_size?: number;
  max_wait_ms?: number;
}

/**
 * Where results too large for the sinks go: a result over a sink's size limit, or over
 * `over_bytes`, is stored at `url` (`s3://BUCKET/PREFIX` or `dir:///FOLDER`) under its SHA-256,
 * and the sinks get `{"claim_check": {url, size, sha256, content_type}}` instead.
 */
export interface ClaimCheck {
  url: string;
  over_bytes?: number | null;
}

/** The data of a result message whose result went to the claim check store. */
export interface ClaimCheckReference {
  claim_check: { url: string; size: number; sha256: string; content_type: string };
}

/**
 * A listener definition: every message on `source` goes to `model`; results to every sink in
 * `outputs`; what cannot succeed to `error_sink` (and the dead-letter store). Only `name`,
 * `source` and `model` are required; the server fills in the defaults and refuses a bad
 * definition with a {@link DefinitionError} saying what to change.
 */
export interface ListenerDefinition {
  name: string;
  /** Connector URL messages are received from, e.g. `local://jobs`, `webhook://orders?secret=...`. */
  source: string;
  /** `OWNER/NAME@SPEC`. */
  model: string;
  outputs?: string[];
  error_sink?: string | null;
  retry?: RetryPolicy;
  batch?: BatchPolicy;
  max_in_flight?: number;
  timeout_s?: number | null;
  max_body_bytes?: number;
  extend_lease?: boolean;
  filter?: Record<string, unknown> | null;
  output_mode?: "cloudevent" | "raw";
  claim_check?: ClaimCheck | null;
  enabled?: boolean;
}

export type ListenerState = "starting" | "running" | "paused" | "degraded" | "stopped";

export interface NodeListenerStatus {
  node: string;
  address: string;
  state: ListenerState | "standby";
  counters: Record<string, number>;
  reason: string | null;
  reason_at: number | null;
  /** The backlog as this node last read it. */
  backlog: number | null;
  /** When this node read it (epoch seconds). */
  backlog_at: number | null;
}

export interface ListenerStatus {
  name: string;
  state: ListenerState;
  reason: string | null;
  reason_at: number | null;
  problems: Record<string, string>;
  /** received, succeeded, retried, dead_lettered, in_flight, ... summed over the live nodes. */
  counters: Record<string, number>;
  /** Runs by status since the listener was first created, from the store: they survive restarts. */
  totals: Record<string, number>;
  /** Messages waiting at the source, as the broker counts them (null when it cannot say). */
  backlog: number | null;
  /** When `backlog` was read (epoch seconds). */
  backlog_at: number | null;
  nodes: NodeListenerStatus[];
  /** The version the listener's model spec resolves to now. */
  version: string | null;
  version_error: string | null;
}

export interface Listener {
  name: string;
  /** The definition as stored: its URLs whole for a key that may manage the listener, else by their shape (`scheme://host:port/***?name=***`). */
  definition: Required<Omit<ListenerDefinition, "error_sink" | "timeout_s" | "filter">> &
    Pick<ListenerDefinition, "error_sink" | "timeout_s" | "filter">;
  status: ListenerStatus;
  created_at: number;
  updated_at: number;
}

export interface ApplyResult {
  created: string[];
  updated: string[];
  unchanged: string[];
  deleted: string[];
}

export type RunStatus = "running" | "retrying" | "succeeded" | "dead_lettered";

/** What happened to one broker message in one listener. */
export interface Run {
  listener: string;
  message_id: string;
  status: RunStatus;
  attempts: number;
  version: string | null;
  output_id: string | null;
  result_location: string[];
  /** The last failure: type, message, permanent, stage. */
  error: Record<string, unknown> | null;
  duration_ms: number | null;
  first_received_at: number;
  updated_at: number;
  finished_at: number | null;
  /** The object a notification announced: BUCKET/KEY (S3), the file's path (dir://). */
  object_key: string | null;
}

export interface RunPage {
  items: Run[];
  /** Pass as `cursor` for the next page. */
  next_cursor: string | null;
}

export interface DeadLetter {
  id: string;
  listener: string;
  message_id: string;
  /** The original body, base64 (only from `deadLetter(id)`). */
  body_base64: string | null;
  body_size: number;
  attributes: Record<string, string>;
  error_type: string;
  error_message: string;
  stacktrace: string;
  permanent: boolean;
  attempts: number;
  /** The listener's OWNER/NAME@SPEC when it failed. */
  model: string;
  version: string | null;
  created_at: number;
  redriven_at: number | null;
  redriven_to: string | null;
  /** As Run.object_key. */
  object_key: string | null;
}

export interface DeadLetterPage {
  items: DeadLetter[];
  next_cursor: string | null;
}

export interface RedriveResult {
  /** The model reference the letters were run on. */
  model: string;
  /** Ids that succeeded. */
  redriven: string[];
  /** Ids that failed again, with the error. */
  failed: Record<string, string>;
}

/** What `redriveMatching` did (`POST /v1/dead-letters/redrive`). */
export interface SearchRedriveResult {
  /** How many dead letters matched the search. */
  matched: number;
  /** Per listener: what was redriven and what failed. */
  listeners: Record<string, RedriveResult>;
}

/**
 * A listener's last hour, per step, summed over every node (`GET /v1/listeners/{name}/history`).
 * Every list has one entry per step, at `times`.
 */
export interface ListenerHistory {
  name: string;
  /** Where the first step begins. */
  start: number;
  /** Where the last step ends (a step every node sampled). */
  end: number;
  step_s: number;
  /** The end of each step. */
  times: number[];
  received_per_s: number[];
  succeeded_per_s: number[];
  retried_per_s: number[];
  dead_lettered_per_s: number[];
  /** Deliveries being processed at the end of the step. */
  in_flight: number[];
  /** Messages waiting at the source; null when no node read it in the step. */
  backlog: (number | null)[];
  /** End-to-end latency of the deliveries settled in the step; null for a step with none. */
  latency_p50_s: (number | null)[];
  latency_p99_s: (number | null)[];
  /** Over the whole window: received, succeeded, retried, dead_lettered, latency_p50_s, latency_p99_s. */
  totals: Record<string, number | null>;
}

/** One version's part of a {@link ModelHistory}. */
export interface VersionHistory {
  /** The version number, or `#` and the build hash's first 12 characters for a build called by its hash. */
  version: string;
  /** Inputs run per second (a batched runner call counts each of its inputs). */
  calls_per_s: number[];
  errors_per_s: number[];
  /** Mean runner time per input; null for a step with no input. */
  duration_mean_s: (number | null)[];
  /** Over the whole window: calls, errors, duration_mean_s. */
  totals: Record<string, number | null>;
}

/**
 * A model's versions' last hour, per step, summed over every node
 * (`GET /v1/models/{owner}/{name}/history`): only versions that ran something in the window.
 */
export interface ModelHistory {
  /** `OWNER/NAME`. */
  model: string;
  start: number;
  end: number;
  step_s: number;
  times: number[];
  /** Highest version first. */
  versions: VersionHistory[];
}

/** A place (queue, topic, folder), a listener or a model version of the {@link FlowGraph}. */
export interface FlowNode {
  /** `listener:NAME`, `model:LISTENER` or `place:N` (numbered in listener-name order). */
  id: string;
  kind: "place" | "listener" | "model";
  /** A place's URL (by its shape), a listener's name, a model. */
  label: string;
  /** Column of the layered layout, 0 at the left. */
  layer: number;
  /** Place in its column, 0 at the top. */
  row: number;
  /** The console page of a listener or model. */
  href: string | null;
  /** A listener's state; a model's `resolved` or `unresolved`. */
  state: string | null;
  /** Why a listener is degraded, or why a model spec does not resolve. */
  reason: string | null;
  /** A place's connector scheme. */
  scheme: string | null;
  /** A place: every spelling of its URL the listeners use, by its shape. */
  urls: string[];
  /** A place: what listeners use it as. */
  roles: ("source" | "output" | "dead-letter")[];
  /** A model node: `OWNER/NAME`, the listener's spec and the version it resolves to now. */
  model: string | null;
  spec: string | null;
  version: string | null;
  /** A listener or model node: its listener. */
  listener: string | null;
}

/** Messages moving from one node to the next, for one listener. */
export interface FlowEdge {
  id: string;
  /** `receive` (received), `invoke` (handed to the model), `result` (succeeded), `dead-letter`. */
  kind: "receive" | "invoke" | "result" | "dead-letter";
  /** The id of the node it leaves. */
  source: string;
  /** The id of the node it enters. */
  target: string;
  listener: string;
  /** Messages it carried since the listener's processes started, summed over the live nodes. */
  messages: number;
  /** Messages per second over the last readings (up to 10 s); null on the first reading. */
  rate_per_s: number | null;
  /** Part of a cycle, drawn right to left. */
  backward: boolean;
}

/** One hop of a pipeline: `upstream` publishes to a place `downstream` reads. */
export interface FlowPipeline {
  upstream: string;
  downstream: string;
  /** The id of the place node they share. */
  place: string;
  /** The upstream's error sink (not an output) feeds the downstream. */
  dead_letters: boolean;
}

/** Every listener as one graph: sources -> listeners -> model versions -> sinks (`GET /v1/flow`). */
export interface FlowGraph {
  /** When the figures were read. */
  at: number;
  nodes: FlowNode[];
  edges: FlowEdge[];
  pipelines: FlowPipeline[];
  /** Number of columns in the layout. */
  layers: number;
}

export interface NodeInfo {
  id: string;
  state: "live" | "gone";
  address: string;
  host: string;
  pid: number;
  version: string;
  workers: number;
  parent: string | null;
  started_at: number;
  heartbeat_at: number;
  heartbeat_age_s: number;
  stopped_at: number | null;
  listeners_running: string[];
  listeners: NodeListenerStatus[];
  this: boolean;
}

export interface Health {
  status: "ok" | "degraded";
  version: string;
  artifacts?: { ok: boolean; store: string; error: string | null; checked_at: number } | null;
}
