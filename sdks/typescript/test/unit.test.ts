/** What needs no server: references, input encoding, error mapping, the folder packer. */

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";

import {
  BuildError,
  ConnectorConfigError,
  encodeInput,
  errorFromDetail,
  errorFromResponse,
  formatRef,
  InvalidInput,
  InvocationTimeout,
  ModelbusError,
  ModelError,
  NotFound,
  parseRef,
  RunnerCrashed,
  VersionNotFound,
} from "modelbus";
import { packModel } from "modelbus/node";

import { HELLO, tempDir } from "./support/models.js";

describe("references", () => {
  test("owner/name defaults to latest; a spec follows @", () => {
    assert.deepEqual(parseRef("acme/ocr"), { owner: "acme", name: "ocr", spec: "latest" });
    assert.deepEqual(parseRef(" acme/ocr@1.2.* "), { owner: "acme", name: "ocr", spec: "1.2.*" });
    assert.equal(formatRef(parseRef("a/b@sha256:abc")), "a/b@sha256:abc");
  });

  test("anything else is InvalidInput", () => {
    for (const bad of ["acme", "acme/ocr/x", "/ocr", "acme/-ocr", "acme/ocr@"]) {
      assert.throws(() => parseRef(bad), InvalidInput, bad);
    }
  });
});

describe("inputs", () => {
  test("bytes are binary, strings text, the rest JSON", async () => {
    const [bytes, binary] = encodeInput(new Uint8Array([1, 2]));
    assert.equal(binary, "application/octet-stream");
    assert.ok(bytes instanceof Uint8Array);
    assert.deepEqual(encodeInput("hi"), ["hi", "text/plain; charset=utf-8"]);
    assert.deepEqual(encodeInput({ a: [1, null] }), ['{"a":[1,null]}', "application/json"]);
    assert.deepEqual(encodeInput(null), ["null", "application/json"]);
    assert.deepEqual(encodeInput("hi", "json"), ['"hi"', "application/json"]);
    assert.deepEqual(encodeInput("<p/>", "text/html"), ["<p/>", "text/html"]);
  });

  test("what cannot be encoded is refused before sending", () => {
    assert.throws(() => encodeInput(undefined), InvalidInput);
    assert.throws(() => encodeInput(() => 1), InvalidInput);
    assert.throws(() => encodeInput({ n: 1 }, "text"), /a text input must be a string or bytes/);
  });
});

describe("errors", () => {
  test("the server's code names the class, with what it carries", () => {
    const body = JSON.stringify({
      error: {
        message: "boom",
        error_type: "ValueError",
        code: "ModelError",
        stacktrace: "Traceback ...",
        permanent: false,
        version: "1.2.3",
      },
    });
    const error = errorFromResponse(400, body);
    assert.ok(error instanceof ModelError && error instanceof ModelbusError && error instanceof Error);
    assert.equal(error.name, "ModelError");
    assert.equal(error.message, "boom");
    assert.equal(error.errorType, "ValueError");
    assert.equal(error.stacktrace, "Traceback ...");
    assert.equal(error.version, "1.2.3");
    assert.equal(error.permanent, false);
    assert.equal(error.status, 400);

    const build = errorFromDetail({ message: "failed", error_type: "BuildError", code: "BuildError", log: "L" }, 422);
    assert.ok(build instanceof BuildError);
    assert.equal(build.log, "L");
    const missing = errorFromDetail({ message: "pip install", error_type: "MissingExtra", code: "MissingExtra" }, 501);
    assert.ok(missing instanceof ConnectorConfigError);
    assert.equal(missing.permanent, true);
  });

  test("an unknown code or a body that is not ours falls back on the status", () => {
    const unknown = errorFromResponse(404, JSON.stringify({ error: { message: "m", error_type: "X", code: "Xyz" } }));
    assert.ok(unknown instanceof NotFound && !(unknown instanceof VersionNotFound));
    const proxy = errorFromResponse(502, "<html>Bad Gateway</html>");
    assert.ok(proxy instanceof RunnerCrashed);
    assert.equal(proxy.message, "<html>Bad Gateway</html>");
    assert.ok(errorFromResponse(504, "") instanceof InvocationTimeout);
    const teapot = errorFromResponse(418, "");
    assert.equal(teapot.constructor, ModelbusError);
    assert.equal(teapot.message, "HTTP 418");
  });
});

describe("packModel", () => {
  test("packs a model folder as a .tar.gz that tar reads, named by its manifest", async () => {
    const packed = await packModel(HELLO);
    assert.equal(packed.owner, "examples");
    assert.equal(packed.name, "hello");
    const dir = tempDir();
    writeFileSync(join(dir, "model.tar.gz"), packed.archive as Uint8Array);
    const listing = execFileSync("tar", ["-tzvf", join(dir, "model.tar.gz")], { encoding: "utf8" });
    const names = listing.trim().split("\n").map((line) => line.split(/\s+/).at(-1));
    assert.deepEqual(names.filter((n) => !n?.endsWith(".md")), ["model.py", "modelbus.toml"]);
    assert.ok(!listing.includes("__pycache__"));
  });

  test("long paths survive (PAX headers); the same folder packs to the same bytes", async () => {
    const dir = tempDir();
    writeFileSync(join(dir, "modelbus.toml"), '[model]\nowner = "me"\nname = \'long.one\'\n[runtime]\n');
    const long = "x".repeat(120) + ".txt";
    writeFileSync(join(dir, long), "data");
    const first = await packModel(dir);
    assert.equal(first.name, "long.one");
    const out = join(tempDir(), "out.tar.gz");
    writeFileSync(out, first.archive as Uint8Array);
    const listing = execFileSync("tar", ["-tzf", out], { encoding: "utf8" });
    assert.ok(listing.split("\n").includes(long), listing);
    assert.deepEqual((await packModel(dir)).archive, first.archive);
  });
});
