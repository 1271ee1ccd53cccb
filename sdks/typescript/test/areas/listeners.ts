/**
 * Listeners (create, read, pause, resume, put, apply, delete), and what they did with messages:
 * run records and dead letters, with a redrive. Messages arrive as signed webhooks
 * (`webhook://` sources), sent by the test itself.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  Conflict,
  DeadLetterNotFound,
  DefinitionError,
  InvalidInput,
  type ListenerDefinition,
  ListenerNotFound,
  RunNotFound,
} from "modelbus";

import { shared } from "../support/context.js";
import { rejected } from "../support/expect.js";
import { finishedRun, hookSource, running, sendHook } from "../support/hooks.js";

const ctx = shared();
const NAME = "ts-orders";

const definition: ListenerDefinition = {
  name: NAME,
  source: hookSource(NAME),
  model: "e2e/behave@1.*",
  retry: { max_attempts: 1 },
};

describe("listeners, runs and dead letters", () => {
  test("create a listener; read it back, in the list, with its status", async () => {
    const created = await ctx.mb.createListener(definition);
    assert.equal(created.name, NAME);
    assert.equal(created.definition.model, "e2e/behave@1.*");
    assert.equal(created.definition.retry.max_attempts, 1);
    assert.equal(created.definition.max_in_flight, 100); // the server's default, filled in
    // a key that may manage the listener (admin here) gets its URL whole; others, redacted
    assert.equal(created.definition.source, definition.source);

    assert.equal((await ctx.mb.listener(NAME)).name, NAME);
    assert.deepEqual((await ctx.mb.listeners()).map((l) => l.name), [NAME]);
    await running(NAME);
    assert.equal((await ctx.mb.listenerStatus(NAME)).version, "1.0.0");
  });

  test("a taken name is a Conflict; a bad definition a DefinitionError saying what to change", async () => {
    assert.ok((await rejected(ctx.mb.createListener(definition))) instanceof Conflict);
    const bad = await rejected(ctx.mb.createListener({ ...definition, name: "ts-bad", model: "not-a-ref" }));
    assert.ok(bad instanceof DefinitionError && bad instanceof InvalidInput, String(bad));
    assert.equal(bad.status, 400);
    assert.match(bad.message, /model/);
  });

  test("a message's run record: succeeded, on the resolved version; and the listener's page of runs", async () => {
    await sendHook(NAME, "order-1", { op: "ok", id: "order-1" });
    const run = await finishedRun(NAME, "order-1");
    assert.equal(run.status, "succeeded");
    assert.equal(run.listener, NAME);
    assert.equal(run.message_id, "order-1");
    assert.equal(run.version, "1.0.0");
    assert.equal(run.attempts, 1);

    await sendHook(NAME, "order-2", { op: "ok", id: "order-2" });
    await finishedRun(NAME, "order-2");
    const first = await ctx.mb.listenerRuns(NAME, { limit: 1 });
    assert.equal(first.items.length, 1);
    assert.ok(first.next_cursor);
    const second = await ctx.mb.listenerRuns(NAME, { limit: 1, cursor: first.next_cursor });
    assert.deepEqual(
      [first.items[0]!.message_id, second.items[0]!.message_id].sort(),
      ["order-1", "order-2"],
    );
    const succeeded = await ctx.mb.listenerRuns(NAME, { status: "succeeded" });
    assert.equal(succeeded.items.length, 2);
    assert.ok((await rejected(ctx.mb.runs("no-such-message"))) instanceof RunNotFound);
  });

  test("a permanent failure is dead-lettered with its body; a redrive runs it again", async () => {
    await sendHook(NAME, "order-bad/1?#", { op: "permanent", id: "bad" }); // an id needing escapes
    const run = await finishedRun(NAME, "order-bad/1?#");
    assert.equal(run.status, "dead_lettered");

    const page = await ctx.mb.deadLetters(NAME);
    assert.equal(page.items.length, 1);
    const summary = page.items[0]!;
    assert.equal(summary.message_id, "order-bad/1?#");
    assert.equal(summary.permanent, true);
    assert.equal(summary.body_base64, null); // bodies only on the single dead letter

    const letter = await ctx.mb.deadLetter(summary.id);
    assert.deepEqual(JSON.parse(atob(letter.body_base64 ?? "")), { op: "permanent", id: "bad" });
    assert.equal(letter.model, "e2e/behave@1.*");
    assert.equal(letter.version, "1.0.0");

    const redriven = await ctx.mb.redrive(NAME, { ids: [summary.id], spec: "1.0.0" });
    assert.equal(redriven.model, "e2e/behave@1.0.0");
    assert.deepEqual(redriven.redriven, []);
    assert.deepEqual(Object.keys(redriven.failed), [summary.id]); // permanent: fails again
    assert.ok((await rejected(ctx.mb.deadLetter("no-such-letter"))) instanceof DeadLetterNotFound);
  });

  test("pause and resume; put and apply report what changed; delete", async () => {
    assert.equal((await ctx.mb.pauseListener(NAME)).status.state, "paused");
    await ctx.mb.resumeListener(NAME);
    await running(NAME);

    // "***" where a credential is stored keeps it.
    const stored = (await ctx.mb.listener(NAME)).definition;
    const put = await ctx.mb.putListener({ ...stored, max_in_flight: 10 });
    assert.equal(put.definition.max_in_flight, 10);
    const applied = await ctx.mb.applyListeners([{ ...stored, max_in_flight: 10 }]);
    assert.deepEqual(applied, { created: [], updated: [], unchanged: [NAME], deleted: [] });
    await sendHook(NAME, "order-3", { op: "ok", id: "order-3" }); // the secret still works
    assert.equal((await finishedRun(NAME, "order-3")).status, "succeeded");

    await ctx.mb.deleteListener(NAME);
    assert.ok((await rejected(ctx.mb.listener(NAME))) instanceof ListenerNotFound);
    // Run records and dead letters are kept.
    assert.equal((await ctx.mb.runs("order-1")).length, 1);
  });

  test("the AsyncAPI document describes the listeners", async () => {
    const name = `asyncapi-${Date.now()}`;
    await ctx.mb.createListener({ name, source: `local://${name}-in`, model: "e2e/behave@1.*", outputs: [`local://${name}-out`] });
    const doc = await ctx.mb.asyncapi();
    assert.equal(doc.asyncapi, "3.0.0");
    assert.ok(Object.keys(doc.channels as Record<string, unknown>).includes(`${name}.source`));
    await ctx.mb.deleteListener(name);
  });

  test("nodes, metrics and health", async () => {
    const nodes = await ctx.mb.nodes();
    assert.ok(nodes.some((n) => n.this && n.state === "live"));
    assert.match(await ctx.mb.metrics(), /# TYPE modelbus_/);
    assert.equal((await ctx.mb.health()).status, "ok");
  });
});
