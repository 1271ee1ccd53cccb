/**
 * The one server every area of the tests shares (starting `modelbus serve` takes seconds):
 * `server.test.ts` starts it and pushes the models, then loads the areas, which read it with
 * {@link shared} when their tests run.
 */

import type { Client } from "modelbus";

import type { ModelbusServer } from "./server.js";

let current: { server: ModelbusServer; mb: Client } | undefined;

export function share(server: ModelbusServer): void {
  current = { server, mb: server.client() };
}

/** The running server and an admin client for it, read lazily (inside tests only). */
export function shared(): { readonly server: ModelbusServer; readonly mb: Client } {
  return {
    get server() {
      return need().server;
    },
    get mb() {
      return need().mb;
    },
  };
}

function need(): { server: ModelbusServer; mb: Client } {
  if (!current) throw new Error("the shared server is not started (run server.test.js)");
  return current;
}
