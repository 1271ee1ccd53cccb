import assert from "node:assert/strict";

import { ModelbusError } from "modelbus";

/** The ModelbusError `promise` rejects with (fails the test if it resolves or throws another). */
export async function rejected(promise: Promise<unknown>): Promise<ModelbusError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof ModelbusError, `not a ModelbusError: ${String(error)}`);
    return error;
  }
  assert.fail("expected the promise to be rejected");
}
