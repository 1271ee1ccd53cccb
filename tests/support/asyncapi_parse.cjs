// Parse an AsyncAPI document (stdin) with the official @asyncapi/parser and print its
// diagnostics as JSON (stdout): [{severity, code, message, path}], severity 0 = error.
// Usage: node asyncapi_parse.cjs PREFIX < document.json  (PREFIX: where npm installed it)
const path = require("node:path");
const { createRequire } = require("node:module");

const load = createRequire(path.join(process.argv[2], "node_modules", "noop.js"));
const { Parser } = load("@asyncapi/parser");

let text = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => (text += chunk));
process.stdin.on("end", async () => {
  const { document, diagnostics } = await new Parser().parse(text);
  const out = diagnostics.map((d) => ({
    severity: d.severity,
    code: String(d.code),
    message: d.message,
    path: d.path.join("/"),
  }));
  process.stdout.write(JSON.stringify({ parsed: document !== undefined, diagnostics: out }));
});
