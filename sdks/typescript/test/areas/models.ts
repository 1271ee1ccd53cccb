/** Models, versions and builds: push (packModel), publish, list, and the errors of a push. */

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  BuildError,
  BuildNotFound,
  InvalidInput,
  ManifestError,
  ModelNotFound,
  VersionConflict,
  VersionNotFound,
} from "modelbus";
import { packModel } from "modelbus/node";

import { shared } from "../support/context.js";
import { rejected } from "../support/expect.js";
import { BEHAVE, copyWith, HELLO, push } from "../support/models.js";

const ctx = shared();

// A behave build whose results say which one ran ({"op": "ok"} -> {"version": ...}).
function behaveSaying(tag: string): string {
  return copyWith(BEHAVE, "model.py", (text) => text.replace('VERSION = "base"', `VERSION = "${tag}"`));
}

describe("models and versions", () => {
  test("push builds and publishes a version, reporting build output as it goes", async () => {
    const lines: string[] = [];
    const pushed = await push(ctx.mb, behaveSaying("pushed"), { version: "2.0.0", onLog: (l) => lines.push(l) });
    assert.equal(pushed.owner, "e2e");
    assert.equal(pushed.name, "behave");
    assert.equal(pushed.version, "2.0.0");
    assert.equal(pushed.published, true);
    assert.equal(pushed.created, true);
    assert.match(pushed.build, /^sha256:[0-9a-f]{64}$/);
    assert.ok(lines.some((l) => l.includes("launch check passed")), lines.join("\n"));
    const out = await ctx.mb.call("e2e/behave@2.*", { op: "ok", id: "v2" });
    assert.equal((out.value as { version: string }).version, "pushed");
  });

  test("the same push again is a no-op; other content under that version is a VersionConflict", async () => {
    const again = await push(ctx.mb, HELLO, { version: "1.0.0" });
    assert.equal(again.created, false);
    const error = await rejected(push(ctx.mb, behaveSaying("other"), { version: "1.0.0" }));
    assert.ok(error instanceof VersionConflict, String(error));
    assert.equal(error.status, 409);
  });

  test("a build pushed without a version is callable by its hash, then published", async () => {
    const pushed = await push(ctx.mb, behaveSaying("unpublished"));
    assert.equal(pushed.version, null);
    const hash = pushed.build.replace("sha256:", "").slice(0, 16);
    const out = await ctx.mb.call(`e2e/behave@${hash}`, { op: "ok" });
    assert.equal((out.value as { version: string }).version, "unpublished");
    assert.ok((await rejected(ctx.mb.call("e2e/behave@3.*", 1))) instanceof VersionNotFound);

    const published = await ctx.mb.publish("e2e", "behave", { build: pushed.build, version: "3.0.0" });
    assert.equal(published.version, "3.0.0");
    assert.equal(published.published, true);
    const out3 = await ctx.mb.call("e2e/behave@3.*", { op: "ok" });
    assert.equal(out3.version, "3.0.0");
  });

  test("a version recorded with publish: false is published later by number", async () => {
    const pushed = await push(ctx.mb, behaveSaying("later"), { version: "4.0.0", publish: false });
    assert.equal(pushed.published, false);
    assert.ok((await rejected(ctx.mb.call("e2e/behave@4.*", 1))) instanceof VersionNotFound);
    await ctx.mb.publish("e2e", "behave", { version: "4.0.0" });
    assert.equal((await ctx.mb.call("e2e/behave@4.*", 1)).version, "4.0.0");
  });

  test("bump gives the next version after the highest", async () => {
    const pushed = await push(ctx.mb, copyWith(HELLO, "model.py", (t) => t + "\n# bumped\n"), { bump: "minor" });
    assert.equal(pushed.version, "1.1.0");
  });

  test("models, model, versions, builds and one build with its log", async () => {
    const models = await ctx.mb.models();
    assert.deepEqual(models.map((m) => `${m.owner}/${m.name}`).sort(), ["e2e/behave", "examples/hello"]);
    const hello = await ctx.mb.model("examples", "hello");
    assert.match(hello.description, /Greets you/);
    assert.equal(hello.latest_version, "1.1.0");

    const versions = await ctx.mb.versions("examples", "hello");
    assert.deepEqual(versions.map((v) => v.version), ["1.1.0", "1.0.0"]);

    const builds = await ctx.mb.builds("examples", "hello");
    assert.equal(builds.length, 2);
    assert.ok(builds.every((b) => b.status === "ready"));
    const one = await ctx.mb.build(versions[1]!.build);
    assert.deepEqual(one.versions, ["1.0.0"]);
    assert.match(one.log ?? "", /launch check passed/);
    assert.equal((one.manifest["model"] as { name: string }).name, "hello");
  });

  test("unknown models and builds are ModelNotFound and BuildNotFound", async () => {
    assert.ok((await rejected(ctx.mb.model("nobody", "nothing"))) instanceof ModelNotFound);
    assert.ok((await rejected(ctx.mb.versions("nobody", "nothing"))) instanceof ModelNotFound);
    assert.ok((await rejected(ctx.mb.build("sha256:" + "0".repeat(64)))) instanceof BuildNotFound);
  });

  test("a model that cannot be launched is a BuildError carrying the build log", async () => {
    const broken = copyWith(HELLO, "modelbus.toml", (t) => t.replace('"model:apply"', '"model:missing"'));
    const error = await rejected(push(ctx.mb, broken, { version: "9.0.0" }));
    assert.ok(error instanceof BuildError, String(error));
    assert.match(error.message, /cannot be launched/);
    assert.match(error.log, /error: \[runtime\] entrypoint/);
  });

  test("a manifest the server refuses is a ManifestError (an InvalidInput)", async () => {
    const bad = copyWith(HELLO, "modelbus.toml", (t) => t.replace("[runtime]", "[runtimes]"));
    const error = await rejected(push(ctx.mb, bad, { version: "9.0.1" }));
    assert.ok(error instanceof ManifestError && error instanceof InvalidInput, String(error));
  });

  test("packModel refuses a folder without modelbus.toml", async () => {
    const error = await rejected(packModel(copyWith(HELLO, "model.py", (t) => t) + "/missing"));
    assert.ok(error instanceof ManifestError);
    assert.match(error.message, /modelbus\.toml: not found/);
  });
});
