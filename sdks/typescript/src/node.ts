/**
 * Node.js only (`import { packModel } from "modelbus/node"`): a model folder packed for
 * {@link Client.push}.
 *
 * The folder is written as a `.tar.gz` with sorted entries and fixed metadata, leaving out
 * `__pycache__`, `.venv`, `node_modules` and `.git`, as the Python SDK and the CLI do. The
 * server unpacks and re-packs every upload deterministically, so the build hash depends only
 * on the files. Only `[model] owner` and `name` are read from `modelbus.toml` here (they name
 * the route); the server validates the whole manifest.
 */

import { lstat, readdir, readFile, readlink, realpath } from "node:fs/promises";
import { join, relative, resolve, sep } from "node:path";
import { gzipSync } from "node:zlib";

import type { ModelArchive } from "./client.js";
import { ArchiveError, ManifestError } from "./errors.js";

export const EXCLUDED_NAMES: ReadonlySet<string> = new Set(["__pycache__", ".venv", "node_modules", ".git"]);
export const MANIFEST_FILE = "modelbus.toml";
const NAME = /^[a-zA-Z0-9][\w.-]*$/;

/**
 * The folder's model owner and name (from its `modelbus.toml`) and a `.tar.gz` of it, ready
 * for `client.push(...)`. Throws {@link ManifestError} when the manifest is missing or names
 * no valid owner and name, {@link ArchiveError} for a file that cannot be packed (a special
 * file, a symlink out of the folder).
 */
export async function packModel(folder: string): Promise<ModelArchive> {
  const root = await realpath(resolve(folder)).catch(() => resolve(folder));
  const { owner, name } = await readModelName(root);
  const blocks: Uint8Array[] = [];
  for (const path of await walk(root)) blocks.push(...(await entry(root, path)));
  blocks.push(new Uint8Array(1024)); // two zero blocks end a tar stream
  return { owner, name, archive: new Uint8Array(gzipSync(Buffer.concat(blocks))) };
}

/** The `[model]` owner and name of `folder/modelbus.toml`; throws {@link ManifestError}. */
export async function readModelName(folder: string): Promise<{ owner: string; name: string }> {
  const file = join(folder, MANIFEST_FILE);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch {
    throw new ManifestError(
      `${file}: not found (a model folder needs a ${MANIFEST_FILE} with a [model] table giving owner and name, and a [runtime] table)`,
    );
  }
  const model = modelTable(text);
  const pick = (key: "owner" | "name"): string => {
    const value = model[key];
    if (value === undefined) throw new ManifestError(`${file}: [model] ${key}: is required`);
    if (!NAME.test(value)) {
      throw new ManifestError(
        `${file}: [model] ${key}: ${JSON.stringify(value)} is not a valid name (letters, digits, '_', '.' or '-', starting with a letter or digit)`,
      );
    }
    return value;
  };
  return { owner: pick("owner"), name: pick("name") };
}

// The string keys of the [model] table: all a push needs to know of the manifest.
function modelTable(text: string): Record<string, string> {
  const found: Record<string, string> = {};
  let table = "";
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    const header = /^\[\s*([^\]]+?)\s*\]/.exec(line);
    if (header?.[1] !== undefined) {
      table = header[1];
      continue;
    }
    const pair = /^(owner|name)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)')/.exec(line);
    if (table === "model" && pair?.[1] !== undefined) {
      found[pair[1]] = pair[2] !== undefined ? (JSON.parse(`"${pair[2]}"`) as string) : (pair[3] ?? "");
    }
  }
  return found;
}

/** Every path under `root` (folders before their contents), sorted at each level. */
async function walk(root: string, dir: string = root): Promise<string[]> {
  const names = (await readdir(dir)).filter((n) => !EXCLUDED_NAMES.has(n)).sort();
  const out: string[] = [];
  for (const name of names) {
    const path = join(dir, name);
    out.push(path);
    if ((await lstat(path)).isDirectory()) out.push(...(await walk(root, path)));
  }
  return out;
}

async function entry(root: string, path: string): Promise<Uint8Array[]> {
  const rel = relative(root, path).split(sep).join("/");
  const st = await lstat(path);
  if (st.isDirectory()) return header(rel + "/", "5", 0o755, 0);
  if (st.isFile()) {
    const data = await readFile(path);
    const mode = st.mode & 0o111 ? 0o755 : 0o644;
    return [...header(rel, "0", mode, data.length), data, new Uint8Array(pad(data.length))];
  }
  if (st.isSymbolicLink()) {
    const target = await realpath(path).catch(() => "");
    if (!target || !(target === root || target.startsWith(root + sep))) {
      throw new ArchiveError(
        `${rel}: symlink points outside the model folder (to ${await readlink(path)}); copy the file into the folder instead`,
      );
    }
    return header(rel, "2", 0o777, 0, await readlink(path));
  }
  throw new ArchiveError(`${rel}: not a regular file, folder or symlink; remove it`);
}

const encoder = new TextEncoder();

/** A ustar header block, preceded by a PAX header when the name or link does not fit. */
function header(name: string, type: string, mode: number, size: number, link = ""): Uint8Array[] {
  const pax: string[] = [];
  if (encoder.encode(name).length > 100) pax.push(paxRecord("path", name));
  if (encoder.encode(link).length > 100) pax.push(paxRecord("linkpath", link));
  const out: Uint8Array[] = [];
  if (pax.length) {
    const body = encoder.encode(pax.join(""));
    out.push(ustar("PaxHeader", "x", 0o644, body.length, ""), body, new Uint8Array(pad(body.length)));
  }
  out.push(ustar(name.slice(0, 100), type, mode, size, link.slice(0, 100)));
  return out;
}

function ustar(name: string, type: string, mode: number, size: number, link: string): Uint8Array {
  const block = new Uint8Array(512);
  const put = (offset: number, length: number, text: string): void => {
    block.set(encoder.encode(text).subarray(0, length), offset);
  };
  const octal = (value: number, length: number): string => value.toString(8).padStart(length - 1, "0");
  put(0, 100, name);
  put(100, 8, octal(mode, 8));
  put(108, 8, octal(0, 8));
  put(116, 8, octal(0, 8));
  put(124, 12, octal(size, 12));
  put(136, 12, octal(0, 12));
  put(148, 8, "        ");
  put(156, 1, type);
  put(157, 100, link);
  put(257, 6, "ustar\0");
  put(263, 2, "00");
  const sum = block.reduce((a, b) => a + b, 0);
  put(148, 8, octal(sum, 7) + "\0 ");
  return block;
}

function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let length = encoder.encode(body).length;
  length += String(length).length;
  if (String(length).length !== String(length - String(length).length).length) length += 1;
  return `${length}${body}`;
}

function pad(size: number): number {
  return (512 - (size % 512)) % 512;
}
