/** Calls (JSON, text, binary), jobs and the errors they throw, against a real `modelbus serve`. */

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  CallResult,
  Client,
  Forbidden,
  InvalidInput,
  InvocationError,
  InvocationTimeout,
  JobNotFound,
  ModelbusError,
  ModelError,
  ModelNotFound,
  NotFound,
  Unauthenticated,
  VersionNotFound,
  WaitTimeout,
} from "modelbus";

import { shared } from "../support/context.js";
import { rejected } from "../support/expect.js";
import { freePort } from "../support/server.js";

const ctx = shared();

describe("call", () => {
  test("a JSON input gives a JSON result, with the version that ran", async () => {
    const out = await ctx.mb.call("examples/hello", { name: "Ada" });
    assert.ok(out instanceof CallResult);
    assert.deepEqual(out.value, { greeting: "Hello, Ada!" });
    assert.equal(out.contentType, "json");
    assert.equal(out.version, "1.0.0");
    assert.ok(out.durationS >= 0);
  });

  test("a string is sent as text and comes back as text", async () => {
    const out = await ctx.mb.call("examples/hello@1.*", "Grace", { stdout: true });
    assert.equal(out.value, "Hello, Grace!");
    assert.equal(out.contentType, "text");
    assert.equal(out.stdout, ""); // asked for, and the model printed nothing
    assert.equal((await ctx.mb.call("examples/hello", "Grace")).stdout, null);
  });

  test("bytes are sent as binary and a binary result comes back as bytes", async () => {
    const bytes = new Uint8Array([0, 1, 2, 250, 255, 10]);
    const out = await ctx.mb.call({ owner: "e2e", name: "behave", spec: "1.0.0" }, bytes);
    assert.equal(out.contentType, "binary");
    assert.ok(out.value instanceof Uint8Array);
    assert.deepEqual([...(out.value as Uint8Array)], [...bytes]);
  });

  test("contentType overrides the kind: bytes already encoded as JSON", async () => {
    const body = new TextEncoder().encode('{"op": "ok", "id": "pre-encoded"}');
    const out = await ctx.mb.call("e2e/behave", body, { contentType: "json" });
    assert.equal(out.contentType, "json");
    assert.equal((out.value as { id: string }).id, "pre-encoded");
  });

  test("a model's exception is a ModelError with its stacktrace and version", async () => {
    const error = await rejected(ctx.mb.call("examples/hello", 42));
    assert.ok(error instanceof ModelError && error instanceof InvocationError);
    assert.equal(error.status, 400);
    assert.equal(error.permanent, true); // hello raises PermanentError
    assert.equal(error.errorType, "PermanentError");
    assert.equal(error.version, "1.0.0");
    assert.match(error.message, /send \{"name": "\.\.\."\} as JSON/);
    assert.match(error.stacktrace, /Traceback/);
  });

  test("a call past its timeout is an InvocationTimeout (transient)", async () => {
    const error = await rejected(ctx.mb.call("e2e/behave", { op: "sleep", seconds: 5 }, { timeoutS: 0.5 }));
    assert.ok(error instanceof InvocationTimeout, String(error));
    assert.equal(error.status, 504);
    assert.equal(error.permanent, false);
  });

  test("an unknown version or model is a NotFound of the right kind", async () => {
    const version = await rejected(ctx.mb.call("examples/hello@7.*", "x"));
    assert.ok(version instanceof VersionNotFound && version instanceof NotFound);
    assert.equal(version.status, 404);
    assert.match(version.message, /7\.\*/);
    const model = await rejected(ctx.mb.call("nobody/nothing", "x"));
    assert.ok(model instanceof NotFound, String(model));
  });

  test("a malformed reference is refused before anything is sent", async () => {
    const error = await rejected(ctx.mb.call("not a ref", "x"));
    assert.ok(error instanceof InvalidInput);
    assert.equal(error.status, 0);
  });
});

describe("jobs", () => {
  test("submit, then wait for the result", async () => {
    const job = await ctx.mb.submit("examples/hello@1.0.0", { name: "Lin" });
    assert.ok(["queued", "running", "succeeded"].includes(job.status));
    assert.deepEqual(job.ref, { owner: "examples", name: "hello", spec: "1.0.0" });
    const done = await ctx.mb.wait(job.id, { timeoutS: 30 });
    assert.equal(done.status, "succeeded");
    assert.ok(done.done);
    assert.deepEqual(done.unwrap().value, { greeting: "Hello, Lin!" });
    assert.equal(done.version, "1.0.0");
    assert.equal((await ctx.mb.job(job.id)).status, "succeeded");
  });

  test("a failed job holds its error, and unwrap throws it", async () => {
    const job = await ctx.mb.wait((await ctx.mb.submit("examples/hello", 7)).id);
    assert.equal(job.status, "failed");
    assert.ok(job.error instanceof ModelError);
    assert.throws(() => job.unwrap(), ModelError);
  });

  test("wait gives up with WaitTimeout; an unknown job is JobNotFound", async () => {
    const job = await ctx.mb.submit("e2e/behave", { op: "sleep", seconds: 3 });
    const error = await rejected(ctx.mb.wait(job.id, { timeoutS: 0.3, pollS: 0.1 }));
    assert.ok(error instanceof WaitTimeout);
    assert.throws(() => job.unwrap(), /has not finished/);
    assert.ok((await rejected(ctx.mb.job("0000000000000000"))) instanceof JobNotFound);
  });
});

describe("auth and transport", () => {
  test("a wrong key is Unauthenticated (401)", async () => {
    const error = await rejected(ctx.server.client("mb_wrong_key").models());
    assert.ok(error instanceof Unauthenticated);
    assert.equal(error.status, 401);
  });

  test("a key without the scope is Forbidden (403); a revoked key stops working", async () => {
    const created = await ctx.mb.createKey("ts-caller", ["call:examples/hello"]);
    const caller = ctx.server.client(created.key);
    assert.equal((await caller.call("examples/hello", "Sam")).value, "Hello, Sam!");
    assert.ok((await rejected(caller.call("e2e/behave", "x"))) instanceof Forbidden);
    assert.ok((await rejected(caller.keys())) instanceof Forbidden);
    assert.ok((await ctx.mb.keys()).some((k) => k.id === created.info.id));
    const revoked = await ctx.mb.revokeKey(created.info.id);
    assert.notEqual(revoked.revoked_at, null);
    assert.ok((await rejected(caller.call("examples/hello", "Sam"))) instanceof Unauthenticated);
  });

  test("a server that cannot be reached is a ModelbusError naming its URL", async () => {
    const url = `http://127.0.0.1:${await freePort()}`;
    const error = await rejected(new Client({ url, key: "k" }).models());
    assert.equal(error.constructor, ModelbusError);
    assert.match(error.message, new RegExp(`cannot reach the modelbus server at ${url}`));
  });
});
