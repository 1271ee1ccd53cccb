/**
 * The modelbus TypeScript SDK: {@link Client}, over the platform's `fetch` (Node 20+, Deno,
 * Bun, browsers), with no runtime dependencies.
 *
 * ```ts
 * import { Client, ModelError } from "modelbus";
 *
 * const mb = new Client({ url: "http://127.0.0.1:8470", key: process.env.MODELBUS_API_KEY });
 * const out = await mb.call("examples/hello", { name: "Ada" });   // out.value: {greeting: ...}
 * const job = await mb.submit("examples/hello@1.*", "later");
 * console.log((await mb.wait(job.id)).unwrap().value);
 * ```
 *
 * Errors the server reports are thrown as the classes exported here (`VersionNotFound`,
 * `ModelError` with the model's `stacktrace`, `Unauthenticated`, ...), the same tree as the
 * Python SDK's `modelbus.errors`. Packing a model folder for `push` needs the file system:
 * `import { packModel } from "modelbus/node"`.
 */

export * from "./errors.js";
export * from "./types.js";
export { type ModelRef, parseRef, formatRef } from "./refs.js";
export { CallResult, Job } from "./results.js";
export {
  Client,
  DEFAULT_TIMEOUT_S,
  DEFAULT_URL,
  encodeInput,
  type CallOptions,
  type CheckOptions,
  type ClientOptions,
  type ContentType,
  type HistoryOptions,
  type Input,
  type ModelArchive,
  type Moment,
  type PageOptions,
  type PublishOptions,
  type PushOptions,
  type RequestBody,
  type RedriveMatchingOptions,
  type RedriveOptions,
  type SearchDeadLettersOptions,
  type SearchFilters,
  type SearchRunsOptions,
  type SubmitOptions,
  type WaitOptions,
} from "./client.js";
