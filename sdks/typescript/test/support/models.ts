/** The repository's model folders the tests push, and helpers around them. */

import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import type { Client, PushInfo, PushOptions } from "modelbus";
import { packModel } from "modelbus/node";

import { REPO } from "./server.js";

/** `examples/hello`: JSON `{"name"}` -> `{"greeting"}`, text -> text, anything else a PermanentError. */
export const HELLO = join(REPO, "examples", "hello");
/** `e2e/behave`: `{"op": "ok" | "permanent" | "sleep", ...}`; any other input is echoed back. */
export const BEHAVE = join(REPO, "tests", "e2e", "models", "behave");

const temporary: string[] = [];
process.on("exit", () => {
  for (const dir of temporary) rmSync(dir, { recursive: true, force: true });
});

/** A new empty directory, removed when the test process exits. */
export function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "modelbus-ts-"));
  temporary.push(dir);
  return dir;
}

export async function push(client: Client, folder: string, options: PushOptions = {}): Promise<PushInfo> {
  return client.push(await packModel(folder), options);
}

/** A copy of `folder` in a temporary directory, with `edit` applied to the file `name`. */
export function copyWith(folder: string, name: string, edit: (text: string) => string): string {
  const copy = join(tempDir(), "model");
  cpSync(folder, copy, { recursive: true, filter: (src) => !src.includes("__pycache__") });
  const file = join(copy, name);
  writeFileSync(file, edit(readFileSync(file, "utf8")));
  return copy;
}

/** Poll `probe` until it returns something other than undefined (or throw after `timeoutMs`). */
export async function eventually<T>(probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms (last error: ${String(last)})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
