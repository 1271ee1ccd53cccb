// A modelbus runner in plain Node.js: word-list sentiment of a text.
//
// It speaks docs/runner-protocol.md on stdin/stdout by itself, with no npm package:
// frame = 4-byte big-endian header length, UTF-8 JSON header, then the blobs listed in
// header.blobs. Logs go to stderr; stdout carries frames only.
"use strict";

// Nothing but frames may reach stdout: send stray console.log output to stderr.
console.log = (...args) => console.error(...args);

const POSITIVE = new Set([
  "good", "great", "excellent", "happy", "love", "loved", "like", "nice", "wonderful",
  "fantastic", "amazing", "fast", "helpful", "perfect", "pleasant", "best", "fine", "glad",
]);
const NEGATIVE = new Set([
  "bad", "terrible", "awful", "sad", "hate", "hated", "slow", "broken", "poor", "worst",
  "horrible", "angry", "useless", "wrong", "late", "failed", "annoying", "ugly",
]);
const NEGATIONS = new Set(["not", "never", "no", "isn't", "wasn't", "don't", "didn't"]);

class PermanentError extends Error {}

function score(text) {
  const words = text.toLowerCase().match(/[a-z']+/g) || [];
  const found = { positive: [], negative: [] };
  let total = 0;
  words.forEach((word, i) => {
    const sign = POSITIVE.has(word) ? 1 : NEGATIVE.has(word) ? -1 : 0;
    if (sign === 0) return;
    const flipped = i > 0 && NEGATIONS.has(words[i - 1]) ? -sign : sign;
    total += flipped;
    found[flipped > 0 ? "positive" : "negative"].push(word);
  });
  const label = total > 0 ? "positive" : total < 0 ? "negative" : "neutral";
  return { label, score: total, words: found };
}

function textOf(input, blob) {
  if (input.content_type === "text") return blob.toString("utf8");
  if (input.content_type === "json") {
    const value = JSON.parse(blob.toString("utf8"));
    if (typeof value === "string") return value;
    if (value && typeof value.text === "string") return value.text;
  }
  throw new PermanentError('send a text, or JSON {"text": "..."}');
}

function errorInfo(err) {
  return {
    type: err.constructor.name,
    message: err.message,
    stacktrace: err.stack || "",
    permanent: err instanceof PermanentError || err instanceof SyntaxError,
  };
}

function encodeFrame(header, blobs = []) {
  const json = Buffer.from(JSON.stringify({ ...header, blobs: blobs.map((b) => b.length) }));
  const prefix = Buffer.alloc(4);
  prefix.writeUInt32BE(json.length, 0);
  return Buffer.concat([prefix, json, ...blobs]);
}

function send(header, blobs) {
  process.stdout.write(encodeFrame(header, blobs));
}

function answer(call, blobs) {
  const outputs = [];
  const results = [];
  call.inputs.forEach((input, i) => {
    try {
      results.push(Buffer.from(JSON.stringify(score(textOf(input, blobs[i])))));
      outputs.push({ ok: true, content_type: "json", mime: null });
    } catch (err) {
      outputs.push({ ok: false, error: errorInfo(err) });
    }
  });
  send({ type: "result", id: call.id, outputs, stdout: call.stdout ? "" : null }, results);
}

// Frame reader: collect stdin chunks, cut whole frames off the front.
let buffered = Buffer.alloc(0);

function nextFrame() {
  if (buffered.length < 4) return null;
  const headerLength = buffered.readUInt32BE(0);
  if (buffered.length < 4 + headerLength) return null;
  const header = JSON.parse(buffered.subarray(4, 4 + headerLength).toString("utf8"));
  const lengths = header.blobs || [];
  const total = 4 + headerLength + lengths.reduce((a, b) => a + b, 0);
  if (buffered.length < total) return null;
  const blobs = [];
  let offset = 4 + headerLength;
  for (const length of lengths) {
    blobs.push(buffered.subarray(offset, offset + length));
    offset += length;
  }
  buffered = buffered.subarray(total);
  return { header, blobs };
}

process.stdin.on("data", (chunk) => {
  buffered = Buffer.concat([buffered, chunk]);
  for (let frame = nextFrame(); frame; frame = nextFrame()) {
    if (frame.header.type === "shutdown") process.exit(0);
    if (frame.header.type === "call") answer(frame.header, frame.blobs);
  }
});
process.stdin.on("end", () => process.exit(0));

// Nothing to load: the word lists are above. Say so, and that several inputs are welcome.
console.error(`node-sentiment runner ${process.pid} ready`);
send({ type: "ready", protocol: 1, batch: true });
