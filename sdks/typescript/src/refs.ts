/** Model references, `owner/name@spec`, as callers write them (the grammar the server uses). */

import { InvalidInput } from "./errors.js";

/**
 * Which model, and which version spec: a semver (`1.2.3`), a wildcard (`1.2.*`, `1.*`),
 * `latest` (when omitted), or a build hash (`sha256:...` or a hex prefix).
 */
export interface ModelRef {
  owner: string;
  name: string;
  spec: string;
}

const NAME = String.raw`[a-zA-Z0-9][\w.-]*`;
const REF = new RegExp(String.raw`^(${NAME})/(${NAME})(?:@(\S+))?$`);

/** Parse `owner/name` or `owner/name@spec`; throws {@link InvalidInput}. */
export function parseRef(text: string): ModelRef {
  const m = REF.exec(text.trim());
  if (!m || m[1] === undefined || m[2] === undefined) {
    throw new InvalidInput(`not a model reference: ${JSON.stringify(text)} (expected OWNER/NAME[@SPEC])`);
  }
  return { owner: m[1], name: m[2], spec: m[3] ?? "latest" };
}

/** `owner/name@spec`. */
export function formatRef(ref: ModelRef): string {
  return `${ref.owner}/${ref.name}@${ref.spec}`;
}
