/**
 * What every listener did, searched: run records and dead letters of all listeners narrowed by
 * listener, status, message id, time and object key, page by page and through the iterators;
 * a redrive of what a search matches; the last hour's history of a listener and of a model;
 * the flow map. Messages arrive as signed webhooks and as files in a `dir://` folder.
 */

import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";

import {
  type DeadLetter,
  InvalidInput,
  ListenerNotFound,
  ModelNotFound,
  type Run,
} from "modelbus";

import { shared } from "../support/context.js";
import { rejected } from "../support/expect.js";
import { finishedRun, hookSource, running, sendHook } from "../support/hooks.js";
import { eventually, tempDir } from "../support/models.js";

const ctx = shared();
const NAME = "ts-search";
const FOLDER = "ts-folder";
const NEXT = "ts-search-next";
// The window the history tests read: 120 steps of 5 s.
const HISTORY = { windowS: 600, stepS: 5 };

let start: Date; // just before this area's first message
let flakyCounter: string;

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const found: T[] = [];
  for await (const item of items) found.push(item);
  return found;
}

function ids(items: (Run | DeadLetter)[]): string[] {
  return items.map((item) => item.message_id).sort();
}

function sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

describe("runs and dead letters searched, redriven by search; history; flow", () => {
  test("searchRuns pages through every listener's runs, narrowed by listener, message id and time", async () => {
    await ctx.mb.createListener({
      name: NAME,
      source: hookSource(NAME),
      model: "e2e/behave@1.*",
      outputs: [`local://${NAME}-out`],
      retry: { max_attempts: 1 },
    });
    await running(NAME);
    start = new Date(Date.now() - 1); // the server stores times in seconds: a millisecond of slack
    for (const id of ["s-1", "s-2", "s-3"]) await sendHook(NAME, id, { op: "ok", id });
    for (const id of ["s-1", "s-2", "s-3"]) assert.equal((await finishedRun(NAME, id)).status, "succeeded");

    const first = await ctx.mb.searchRuns({ listener: NAME, limit: 2 });
    assert.equal(first.items.length, 2);
    assert.ok(first.next_cursor);
    const second = await ctx.mb.searchRuns({ listener: NAME, limit: 2, cursor: first.next_cursor });
    assert.equal(second.next_cursor, null);
    assert.deepEqual(ids([...first.items, ...second.items]), ["s-1", "s-2", "s-3"]);

    const one = await ctx.mb.searchRuns({ messageId: "s-2" });
    assert.deepEqual(one.items.map((r) => [r.listener, r.message_id]), [[NAME, "s-2"]]);
    // The listeners area's runs came before `start`: only this area's are at or after it.
    assert.deepEqual(ids((await ctx.mb.searchRuns({ since: start })).items), ["s-1", "s-2", "s-3"]);
    const before = await ctx.mb.searchRuns({ until: start.getTime() / 1000 }); // epoch seconds
    assert.ok(before.items.length > 0 && before.items.every((r) => r.listener !== NAME));
    assert.deepEqual((await ctx.mb.searchRuns({ listener: NAME, status: "dead_lettered" })).items, []);
  });

  test("eachRun follows the cursors to the last page", async () => {
    const runs = await collect(ctx.mb.eachRun({ listener: NAME, limit: 1 }));
    assert.deepEqual(ids(runs), ["s-1", "s-2", "s-3"]);
    const everyone = await collect(ctx.mb.eachRun({ limit: 2 }));
    assert.deepEqual(new Set(everyone.map((r) => r.listener)), new Set([NAME, "ts-orders"]));
  });

  test("searchDeadLetters and eachDeadLetter find every listener's letters", async () => {
    flakyCounter = join(tempDir(), "counter");
    // Fails once (a transient error: dead-lettered, max_attempts is 1), then succeeds.
    await sendHook(NAME, "s-flaky", { op: "flaky", id: "s-flaky", counter: flakyCounter, fails: 1 });
    await sendHook(NAME, "s-bad", { op: "permanent", id: "s-bad" });
    for (const id of ["s-flaky", "s-bad"]) assert.equal((await finishedRun(NAME, id)).status, "dead_lettered");

    const dead = await ctx.mb.searchRuns({ listener: NAME, status: "dead_lettered" });
    assert.deepEqual(ids(dead.items), ["s-bad", "s-flaky"]);

    const first = await ctx.mb.searchDeadLetters({ listener: NAME, limit: 1 });
    assert.equal(first.items.length, 1);
    assert.ok(first.next_cursor);
    assert.equal(first.items[0]!.body_base64, null); // bodies only on the single dead letter
    const second = await ctx.mb.searchDeadLetters({ listener: NAME, limit: 1, cursor: first.next_cursor });
    assert.deepEqual(ids([...first.items, ...second.items]), ["s-bad", "s-flaky"]);
    assert.deepEqual(ids(await collect(ctx.mb.eachDeadLetter({ listener: NAME, limit: 1 }))), ["s-bad", "s-flaky"]);

    const flaky = (await ctx.mb.searchDeadLetters({ messageId: "s-flaky" })).items;
    assert.deepEqual(flaky.map((d) => [d.listener, d.permanent]), [[NAME, false]]);
    const letters = await collect(ctx.mb.eachDeadLetter());
    assert.deepEqual(new Set(letters.map((d) => d.listener)), new Set([NAME, "ts-orders"]));
    const older = await ctx.mb.searchDeadLetters({ until: start.toISOString() }); // ISO 8601
    assert.deepEqual(older.items.map((d) => d.listener), ["ts-orders"]);
  });

  test("redriveMatching runs again what a search matches; an empty search needs all", async () => {
    const empty = await rejected(ctx.mb.redriveMatching({}));
    assert.ok(empty instanceof InvalidInput, String(empty));
    assert.equal(empty.status, 400);
    // all: every letter of every listener, the deleted listener's too, which cannot be redriven
    assert.ok((await rejected(ctx.mb.redriveMatching({ all: true }))) instanceof ListenerNotFound);
    assert.equal(readFileSync(flakyCounter, "utf8").split("\n").filter(Boolean).length, 1); // nothing ran

    const letters = (await ctx.mb.searchDeadLetters({ listener: NAME })).items;
    const letterOf = (id: string): string => letters.find((d) => d.message_id === id)!.id;
    const result = await ctx.mb.redriveMatching({ listener: NAME, since: start, spec: "1.0.0", ratePerS: 100 });
    assert.equal(result.matched, 2);
    assert.deepEqual(Object.keys(result.listeners), [NAME]);
    const mine = result.listeners[NAME]!;
    assert.equal(mine.model, "e2e/behave@1.0.0");
    assert.deepEqual(mine.redriven, [letterOf("s-flaky")]);
    assert.deepEqual(Object.keys(mine.failed), [letterOf("s-bad")]); // permanent: fails again
    assert.match(mine.failed[letterOf("s-bad")]!, /can never be processed/);

    assert.equal((await finishedRun(NAME, "s-flaky")).status, "succeeded");
    const pending = await ctx.mb.searchDeadLetters({ listener: NAME, includeRedriven: false });
    assert.deepEqual(ids(pending.items), ["s-bad"]);
    const redriven = (await ctx.mb.searchDeadLetters({ messageId: "s-flaky" })).items[0]!;
    assert.equal(redriven.redriven_to, "e2e/behave@1.0.0");
    // Redriven letters are left out by default: only the one that failed matches again.
    assert.equal((await ctx.mb.redriveMatching({ listener: NAME })).matched, 1);
  });

  test("objectKey finds the runs of a folder's file by the tail of its path", async () => {
    const inbox = join(ctx.server.folders, "inbox");
    mkdirSync(join(inbox, "scans"), { recursive: true });
    await ctx.mb.createListener({ name: FOLDER, source: `dir://${inbox}?poll_ms=100`, model: "e2e/behave@1.*" });
    await running(FOLDER);
    writeFileSync(join(inbox, "scans", "page-7.txt"), "seven");
    writeFileSync(join(inbox, "page-8.txt"), "eight");

    const [run] = await eventually(async () => {
      const found = (await ctx.mb.searchRuns({ objectKey: "scans/page-7.txt", status: "succeeded" })).items;
      return found.length > 0 ? found : undefined;
    });
    assert.equal(run!.listener, FOLDER);
    assert.equal(run!.object_key, join(inbox, "scans", "page-7.txt"));
    const byName = (await ctx.mb.searchRuns({ objectKey: "page-7.txt" })).items;
    assert.deepEqual(byName.map((r) => r.object_key), [run!.object_key]);
    assert.deepEqual((await ctx.mb.searchRuns({ objectKey: "age-7.txt" })).items, []); // a tail after a '/' only
    assert.deepEqual((await ctx.mb.searchDeadLetters({ objectKey: "page-7.txt" })).items, []);
  });

  test("listenerHistory: what the listener received, per step and over the window", async () => {
    // 5 received: 3 succeeded, 2 dead-lettered; the redrives are not deliveries
    const history = await eventually(async () => {
      const found = await ctx.mb.listenerHistory(NAME, HISTORY);
      return found.totals["dead_lettered"] === 2 && found.totals["succeeded"] === 3 ? found : undefined;
    });
    assert.equal(history.name, NAME);
    assert.equal(history.step_s, 5);
    assert.equal(history.times.length, 120);
    assert.equal(history.times.at(-1), history.end);
    for (const series of ["received_per_s", "succeeded_per_s", "in_flight", "backlog", "latency_p50_s"] as const) {
      assert.equal(history[series].length, 120, series);
    }
    assert.equal(history.totals["received"], 5);
    assert.equal(history.totals["retried"], 0);
    assert.ok(Math.abs(sum(history.received_per_s) * 5 - 5) < 1e-6, String(history.received_per_s));
    assert.ok(history.latency_p50_s.some((p) => p !== null && p > 0));

    const short = await ctx.mb.listenerHistory(NAME, { windowS: 60, stepS: 10 });
    assert.equal(short.times.length, 6);
    assert.ok((await rejected(ctx.mb.listenerHistory("no-such-listener"))) instanceof ListenerNotFound);
    const bad = await rejected(ctx.mb.listenerHistory(NAME, { windowS: 10, stepS: 60 }));
    assert.ok(bad instanceof InvalidInput, String(bad));
  });

  test("modelHistory: the calls and errors of each version of a model", async () => {
    const history = await eventually(async () => {
      const found = await ctx.mb.modelHistory("e2e", "behave", HISTORY);
      const v1 = found.versions.find((v) => v.version === "1.0.0");
      // at least: this area's 5 deliveries and 2 redrives, 3 errors among them
      return v1 && (v1.totals["calls"] ?? 0) >= 7 && (v1.totals["errors"] ?? 0) >= 3 ? found : undefined;
    });
    assert.equal(history.model, "e2e/behave");
    assert.equal(history.times.length, 120);
    const v1 = history.versions.find((v) => v.version === "1.0.0")!;
    assert.equal(v1.calls_per_s.length, 120);
    assert.ok(Math.abs(sum(v1.calls_per_s) * 5 - v1.totals["calls"]!) < 1e-6);
    assert.ok(v1.duration_mean_s.some((d) => d !== null && d > 0));
    const numbered = history.versions.map((v) => v.version).filter((v) => !v.startsWith("#"));
    assert.deepEqual(numbered, [...numbered].sort().reverse()); // highest version first
    assert.ok((await rejected(ctx.mb.modelHistory("e2e", "no-such-model"))) instanceof ModelNotFound);
  });

  test("flow: the listener between its source, its model version and its sinks; pipelines", async () => {
    await ctx.mb.createListener({ name: NEXT, source: `local://${NAME}-out`, model: "e2e/behave@1.*", enabled: false });
    const graph = await ctx.mb.flow();
    const node = (id: string) => graph.nodes.find((n) => n.id === id);
    const listener = node(`listener:${NAME}`)!;
    assert.deepEqual([listener.kind, listener.state], ["listener", "running"]);
    const model = node(`model:${NAME}`)!;
    assert.deepEqual([model.model, model.spec, model.version, model.state], ["e2e/behave", "1.*", "1.0.0", "resolved"]);
    assert.equal(node(`listener:${NEXT}`)?.state, "paused");

    const edges = graph.edges.filter((e) => e.listener === NAME);
    const edge = (kind: string) => edges.find((e) => e.kind === kind)!;
    assert.equal(edge("receive").target, listener.id);
    assert.equal(node(edge("receive").source)?.scheme, "webhook");
    assert.equal(edge("receive").messages, 5);
    assert.equal(edge("invoke").target, model.id);
    assert.ok(edge("result").messages >= 3); // and the redrive's success
    const out = node(edge("result").target)!;
    assert.deepEqual([out.kind, out.roles.sort()], ["place", ["output", "source"]]);
    assert.deepEqual(graph.pipelines, [{ upstream: NAME, downstream: NEXT, place: out.id, dead_letters: false }]);
    assert.ok(node(`listener:${FOLDER}`));
    assert.ok(graph.layers >= 3);
    assert.ok(edges.every((e) => e.rate_per_s === null)); // the first reading has no rate yet

    await new Promise((r) => setTimeout(r, 600));
    const later = await ctx.mb.flow();
    assert.ok(later.edges.every((e) => typeof e.rate_per_s === "number"), JSON.stringify(later.edges));
    for (const name of [NEXT, FOLDER, NAME]) await ctx.mb.deleteListener(name);
    assert.deepEqual((await ctx.mb.flow()).nodes, []); // no listener left
  });
});
