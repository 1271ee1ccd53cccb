/**
 * A REAL `modelbus serve` for the tests: a free port, its own temporary data directory, the
 * admin key it prints on first start (as `tests/support/server.py` does for the Python tests),
 * a folder for `dir://` sources (its only dir root), and a heartbeat every second, so the
 * last hour's history has a new sample each second rather than every five.
 *
 * The server is the repository's `.venv/bin/modelbus`, or `MODELBUS_BIN` when set. Its output
 * goes to a log file in the data directory's parent, shown when it fails to start.
 */

import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { Client } from "modelbus";

const START_TIMEOUT_MS = 60_000;
/** The repository root (this file runs from sdks/typescript/build-test/test/support). */
export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../../../../..");

function modelbusBin(): string {
  if (process.env["MODELBUS_BIN"]) return process.env["MODELBUS_BIN"];
  const venv = join(REPO, ".venv", "bin", "modelbus");
  return existsSync(venv) ? venv : "modelbus";
}

/** A TCP port nobody listens on right now (the kernel's choice). */
export function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => done(port));
    });
  });
}

export class ModelbusServer {
  readonly url: string;
  readonly adminKey: string;
  /** Where `dir://` sources and sinks may lie (the server's `MODELBUS_DIR_ROOTS`). */
  readonly folders: string;
  readonly #process: ChildProcess;
  readonly #root: string;

  private constructor(url: string, adminKey: string, process: ChildProcess, root: string) {
    this.url = url;
    this.adminKey = adminKey;
    this.folders = join(root, "folders");
    this.#process = process;
    this.#root = root;
  }

  /** Start a server and wait until `/health` answers and the admin key was printed. */
  static async start(): Promise<ModelbusServer> {
    const root = mkdtempSync(join(tmpdir(), "modelbus-ts-"));
    const port = await freePort();
    const logPath = join(root, "server.log");
    mkdirSync(join(root, "folders"));
    const log = openSync(logPath, "w");
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("MODELBUS_")));
    const child = spawn(modelbusBin(), ["serve", "--port", String(port), "--data-dir", join(root, "data")], {
      stdio: ["ignore", log, log],
      env: {
        ...env,
        MODELBUS_WORKERS: "1",
        MODELBUS_DIR_ROOTS: join(root, "folders"),
        MODELBUS_HEARTBEAT_INTERVAL_S: "1",
      },
      detached: true, // its own process group: its runners stop with it
    });
    const url = `http://127.0.0.1:${port}`;
    const readLog = (): string => readFileSync(logPath, "utf8");
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`modelbus serve exited (${child.exitCode}):\n${readLog()}`);
      const key = /admin API key: (\S+)/.exec(readLog())?.[1];
      if (key && (await healthy(url))) return new ModelbusServer(url, key, child, root);
      if (Date.now() > deadline) {
        killGroup(child, "SIGKILL");
        throw new Error(`modelbus serve did not start within ${START_TIMEOUT_MS} ms:\n${readLog()}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** A client for this server (the admin key unless `key` is given). */
  client(key?: string): Client {
    return new Client({ url: this.url, key: key ?? this.adminKey, timeoutS: 120 });
  }

  /** SIGTERM the server (graceful stop), SIGKILL what is left of its group, remove its data. */
  async stop(): Promise<void> {
    if (this.#process.exitCode === null) {
      const exited = new Promise((r) => this.#process.once("exit", r));
      killGroup(this.#process, "SIGTERM");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))]);
    }
    killGroup(this.#process, "SIGKILL");
    rmSync(this.#root, { recursive: true, force: true });
  }
}

async function healthy(url: string): Promise<boolean> {
  try {
    return (await fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) })).ok;
  } catch {
    return false;
  }
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    if (child.pid) process.kill(-child.pid, signal);
  } catch {
    // Already gone.
  }
}
