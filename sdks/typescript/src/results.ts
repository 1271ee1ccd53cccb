/**
 * What calls give back: {@link CallResult} (one successful call) and {@link Job} (an
 * asynchronous call, with its result or its error once it has finished).
 */

import { errorFromDetail, ModelbusError, ModelError } from "./errors.js";
import type { ModelRef } from "./refs.js";
import type { CallEnvelope, ContentTypeName, JobInfo, JobStatus } from "./types.js";

/** One successful call. */
export class CallResult {
  /** The decoded result: a JSON value, a string (text) or a `Uint8Array` (binary). */
  readonly value: unknown;
  readonly contentType: ContentTypeName;
  /** Seconds the model took. */
  readonly durationS: number;
  /** The resolved version that ran. */
  readonly version: string | null;
  /** What the model printed, when asked with `stdout: true`. */
  readonly stdout: string | null;
  /** The MIME type of a binary result, when the model gave one. */
  readonly mime: string | null;

  constructor(envelope: CallEnvelope) {
    const meta = envelope.metadata;
    this.contentType = meta.content_type;
    this.value = meta.content_type === "binary" ? fromBase64(String(envelope.result)) : envelope.result;
    this.durationS = meta.duration;
    this.version = meta.version ?? null;
    this.stdout = meta.stdout ?? null;
    this.mime = meta.mime ?? null;
  }
}

/** An asynchronous call. `result` is set once it succeeded, `error` once it failed. */
export class Job {
  readonly id: string;
  readonly status: JobStatus;
  readonly ref: ModelRef;
  /** The resolved version, once known. */
  readonly version: string | null;
  readonly createdAt: number;
  readonly startedAt: number | null;
  readonly finishedAt: number | null;
  readonly result: CallResult | null;
  readonly error: ModelbusError | null;

  constructor(info: JobInfo) {
    this.id = info.id;
    this.status = info.status;
    this.ref = { owner: info.owner, name: info.name, spec: info.spec };
    this.version = info.version ?? null;
    this.createdAt = info.created_at;
    this.startedAt = info.started_at ?? null;
    this.finishedAt = info.finished_at ?? null;
    this.result = info.result ? new CallResult(info.result) : null;
    // A job's error is what its invocation raised: a model error unless it says otherwise.
    this.error = info.error ? errorFromDetail(info.error, 0, ModelError) : null;
  }

  /** Whether the job has finished (succeeded or failed). */
  get done(): boolean {
    return this.status === "succeeded" || this.status === "failed";
  }

  /** The result; throws the job's error if it failed, or a ModelbusError if it has not finished. */
  unwrap(): CallResult {
    if (this.error) throw this.error;
    if (!this.result) throw new ModelbusError(`job ${this.id} has not finished (status ${this.status})`);
    return this.result;
  }
}

function fromBase64(text: string): Uint8Array {
  const bytes = atob(text);
  const out = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) out[i] = bytes.charCodeAt(i);
  return out;
}
