/**
 * Messages for `webhook://` listeners, sent by the tests themselves as signed POSTs to
 * `/v1/hooks/NAME` (the Idempotency-Key is the broker message id), and waiting for their runs.
 */

import assert from "node:assert/strict";
import { createHmac } from "node:crypto";

import type { Run } from "modelbus";

import { shared } from "./context.js";
import { eventually } from "./models.js";

const ctx = shared();
const SECRET = "ts-sdk-test-secret-0123456789abcdef";

/** The source URL of a webhook listener `name` that {@link sendHook} can post to. */
export function hookSource(name: string): string {
  return `webhook://${name}?secret=${SECRET}`;
}

/** POST a signed webhook to the hook `name`, with `id` as its Idempotency-Key (the message id). */
export async function sendHook(name: string, id: string, body: unknown): Promise<void> {
  const text = JSON.stringify(body);
  const t = Math.floor(Date.now() / 1000).toString();
  const v1 = createHmac("sha256", SECRET).update(`${t}.${text}`).digest("hex");
  const response = await fetch(`${ctx.server.url}/v1/hooks/${name}`, {
    method: "POST",
    headers: { "Content-Type": "application/json", "Idempotency-Key": id, "X-Modelbus-Signature": `t=${t},v1=${v1}` },
    body: text,
  });
  assert.equal(response.status, 202, await response.text());
}

/** The run record of message `id` in `listener` once it has finished (succeeded or dead-lettered). */
export async function finishedRun(listener: string, id: string): Promise<Run> {
  return eventually(async () => {
    const [run] = await ctx.mb.runs(id, { listener });
    return run && (run.status === "succeeded" || run.status === "dead_lettered") ? run : undefined;
  });
}

/** Wait until listener `name` runs. */
export async function running(name: string): Promise<void> {
  await eventually(async () => ((await ctx.mb.listenerStatus(name)).state === "running" ? true : undefined));
}
