/**
 * The SDK's types against the server's OpenAPI document: each interface of `types.ts` has
 * exactly the properties of its schema. The key lists below are checked by the compiler
 * against the interfaces (`Keys<T>` needs every key of T and accepts no other), and here at
 * run time against `/openapi.json`, so neither side can drift without a failing test.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import type {
  ApplyResult,
  BatchPolicy,
  BuildInfo,
  CallEnvelope,
  ClaimCheck,
  CreatedKey,
  DeadLetter,
  DeadLetterPage,
  ErrorDetail,
  FlowEdge,
  FlowGraph,
  FlowNode,
  FlowPipeline,
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
  NodeListenerStatus,
  PushInfo,
  RedriveResult,
  RetryPolicy,
  Run,
  RunPage,
  SearchRedriveResult,
  VersionHistory,
  VersionInfo,
} from "modelbus";

import { shared } from "../support/context.js";

const ctx = shared();

type Keys<T> = { [K in keyof Required<T>]: true };

function keys<T>(names: Keys<T>): string[] {
  return Object.keys(names).sort();
}

// OpenAPI schema name -> the properties of the SDK's interface for it.
const SCHEMAS: Record<string, string[]> = {
  ModelInfo: keys<ModelInfo>({ owner: true, name: true, description: true, created_at: true, latest_version: true }),
  VersionInfo: keys<VersionInfo>({ owner: true, name: true, version: true, build: true, published: true, created_at: true }),
  BuildInfo: keys<BuildInfo>({
    hash: true, owner: true, name: true, status: true, env_hash: true, created_at: true,
    finished_at: true, versions: true, manifest: true, log: true, node_logs: true,
  }),
  PushInfo: keys<PushInfo>({
    owner: true, name: true, version: true, build: true, published: true, created: true,
    built: true, env_reused: true,
  }),
  JobInfo: keys<JobInfo>({
    id: true, status: true, owner: true, name: true, spec: true, version: true, created_at: true,
    started_at: true, finished_at: true, result: true, error: true,
  }),
  CallEnvelope: keys<CallEnvelope>({ result: true, metadata: true }),
  CallMetadata: keys<CallEnvelope["metadata"]>({ content_type: true, duration: true, version: true, mime: true, stdout: true }),
  ErrorDetail: keys<ErrorDetail>({
    message: true, error_type: true, code: true, stacktrace: true, permanent: true, version: true, log: true,
  }),
  KeyInfoOut: keys<KeyInfo>({ id: true, name: true, scopes: true, created_at: true, last_used_at: true, revoked_at: true }),
  CreatedKey: keys<CreatedKey>({ key: true, info: true }),
  ListenerDefinition: keys<ListenerDefinition>({
    name: true, source: true, model: true, outputs: true, error_sink: true, retry: true, batch: true,
    max_in_flight: true, timeout_s: true, max_body_bytes: true, extend_lease: true, filter: true,
    output_mode: true, claim_check: true, enabled: true,
  }),
  ClaimCheck: keys<ClaimCheck>({ url: true, over_bytes: true }),
  RetryPolicy: keys<RetryPolicy>({ max_attempts: true, initial_backoff_s: true, max_backoff_s: true, multiplier: true, jitter: true }),
  BatchPolicy: keys<BatchPolicy>({ max_batch_size: true, max_wait_ms: true }),
  ListenerOut: keys<Listener>({ name: true, definition: true, status: true, created_at: true, updated_at: true }),
  ListenerStatusOut: keys<ListenerStatus>({
    name: true, state: true, reason: true, reason_at: true, problems: true, counters: true, totals: true,
    backlog: true, backlog_at: true, nodes: true, version: true, version_error: true,
  }),
  NodeListenerOut: keys<NodeListenerStatus>({
    node: true, address: true, state: true, counters: true, reason: true, reason_at: true, backlog: true,
    backlog_at: true,
  }),
  ApplyOut: keys<ApplyResult>({ created: true, updated: true, unchanged: true, deleted: true }),
  RunOut: keys<Run>({
    listener: true, message_id: true, status: true, attempts: true, version: true, output_id: true,
    result_location: true, error: true, duration_ms: true, first_received_at: true, updated_at: true,
    finished_at: true, object_key: true,
  }),
  RunPage: keys<RunPage>({ items: true, next_cursor: true }),
  DeadLetterOut: keys<DeadLetter>({
    id: true, listener: true, message_id: true, body_base64: true, body_size: true, attributes: true,
    error_type: true, error_message: true, stacktrace: true, permanent: true, attempts: true, model: true,
    version: true, created_at: true, redriven_at: true, redriven_to: true, object_key: true,
  }),
  DeadLetterPage: keys<DeadLetterPage>({ items: true, next_cursor: true }),
  RedriveOut: keys<RedriveResult>({ model: true, redriven: true, failed: true }),
  SearchRedriveOut: keys<SearchRedriveResult>({ matched: true, listeners: true }),
  ListenerHistoryOut: keys<ListenerHistory>({
    name: true, start: true, end: true, step_s: true, times: true, received_per_s: true,
    succeeded_per_s: true, retried_per_s: true, dead_lettered_per_s: true, in_flight: true, backlog: true,
    latency_p50_s: true, latency_p99_s: true, totals: true,
  }),
  ModelHistoryOut: keys<ModelHistory>({
    model: true, start: true, end: true, step_s: true, times: true, versions: true,
  }),
  VersionHistoryOut: keys<VersionHistory>({
    version: true, calls_per_s: true, errors_per_s: true, duration_mean_s: true, totals: true,
  }),
  FlowGraph: keys<FlowGraph>({ at: true, nodes: true, edges: true, pipelines: true, layers: true }),
  FlowNode: keys<FlowNode>({
    id: true, kind: true, label: true, layer: true, row: true, href: true, state: true, reason: true,
    scheme: true, urls: true, roles: true, model: true, spec: true, version: true, listener: true,
  }),
  FlowEdge: keys<FlowEdge>({
    id: true, kind: true, source: true, target: true, listener: true, messages: true, rate_per_s: true,
    backward: true,
  }),
  FlowPipeline: keys<FlowPipeline>({ upstream: true, downstream: true, place: true, dead_letters: true }),
  NodeOut: keys<NodeInfo>({
    id: true, state: true, address: true, host: true, pid: true, version: true, workers: true, parent: true,
    started_at: true, heartbeat_at: true, heartbeat_age_s: true, stopped_at: true, listeners_running: true,
    listeners: true, this: true,
  }),
  Health: keys<Health>({ status: true, version: true, artifacts: true }),
};

describe("types against the OpenAPI document", () => {
  test("every typed schema has exactly the properties the server documents", async () => {
    const response = await fetch(`${ctx.server.url}/openapi.json`, {
      headers: { Authorization: `Bearer ${ctx.server.adminKey}` },
    });
    const document = (await response.json()) as {
      components: { schemas: Record<string, { properties?: Record<string, unknown> }> };
    };
    for (const [name, properties] of Object.entries(SCHEMAS)) {
      const schema = document.components.schemas[name];
      assert.ok(schema, `the OpenAPI document has no schema ${name}`);
      assert.deepEqual(properties, Object.keys(schema.properties ?? {}).sort(), name);
    }
  });
});
