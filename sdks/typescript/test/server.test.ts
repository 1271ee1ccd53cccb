/**
 * Every test that needs a server, against one real `modelbus serve` started here (with
 * `examples/hello` and `e2e/behave` pushed as 1.0.0), by area: calls and jobs, models and
 * versions, listeners, runs and dead letters; searches, history and the flow map; the types
 * against the OpenAPI document.
 */

import { after, before } from "node:test";

import { share, shared } from "./support/context.js";
import { BEHAVE, HELLO, push } from "./support/models.js";
import { ModelbusServer } from "./support/server.js";

let server: ModelbusServer | undefined;

before(async () => {
  server = await ModelbusServer.start();
  share(server);
  await push(shared().mb, HELLO, { version: "1.0.0" });
  await push(shared().mb, BEHAVE, { version: "1.0.0" });
});

after(async () => {
  await server?.stop();
});

await import("./areas/calls.js");
await import("./areas/models.js");
await import("./areas/listeners.js");
await import("./areas/search.js");
await import("./areas/openapi.js");
