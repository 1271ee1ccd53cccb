// modelbus console: a little plain JavaScript on top of server-rendered pages (no build step).
// Every page works without it; it adds showing only the input field that applies, live
// listener figures (polling), "select all" for dead letters, and copy buttons.
"use strict";

function setupTryForm() {
  const form = document.getElementById("try-form");
  if (!form) return;
  const show = () => {
    const kind = form.querySelector('input[name="kind"]:checked');
    const file = kind && kind.value === "file";
    form.querySelector('[data-kind-field="typed"]').hidden = file;
    form.querySelector('[data-kind-field="file"]').hidden = !file;
  };
  form.querySelectorAll('input[name="kind"]').forEach((radio) => radio.addEventListener("change", show));
  show();
}

function focusOutcome() {
  const outcome = document.getElementById("outcome");
  if (outcome) outcome.focus();
}

// --- live listener figures ------------------------------------------------------------
const LIVE_INTERVAL_MS = 1000;
const SPARK_POINTS = 30;
const SPARK_W = 120;
const SPARK_H = 28;
const history = new Map(); // listener name -> {at, settled, rates: []}

function settledCount(counters) {
  return (counters.succeeded || 0) + (counters.dead_lettered || 0);
}

function setText(row, selector, text) {
  const cell = row.querySelector(selector);
  if (cell && cell.textContent !== text) cell.textContent = text;
}

function drawSparkline(row, rates) {
  const line = row.querySelector(".sparkline polyline");
  if (!line || rates.length === 0) return;
  const top = Math.max(...rates, 1);
  const step = SPARK_W / (SPARK_POINTS - 1);
  const start = SPARK_POINTS - rates.length;
  const points = rates.map((rate, i) => {
    const x = (start + i) * step;
    const y = SPARK_H - 1 - (rate / top) * (SPARK_H - 2);
    return `${x.toFixed(1)},${y.toFixed(1)}`;
  });
  line.setAttribute("points", points.join(" "));
}

function updateThroughput(row, status, at) {
  const now = settledCount(status.counters);
  const past = history.get(status.name);
  const entry = past || { at, settled: now, rates: [] };
  if (past && at > past.at) {
    const rate = Math.max(0, (now - past.settled) / (at - past.at));
    entry.rates = entry.rates.concat([rate]).slice(-SPARK_POINTS);
    entry.at = at;
    entry.settled = now;
    setText(row, '[data-figure="rate"]', `${rate.toFixed(1)}/s`);
  }
  history.set(status.name, entry);
  drawSparkline(row, entry.rates);
}

function reasonOf(status) {
  if (status.state !== "degraded") return "";
  const problems = Object.values(status.problems || {});
  return problems.length ? problems.join("; ") : status.reason || "";
}

function updateRow(row, status, at) {
  const c = status.counters || {};
  for (const name of ["received", "succeeded", "retried", "dead_lettered", "in_flight"]) {
    setText(row, `[data-figure="${name}"]`, String(Math.round(c[name] || 0)));
  }
  setText(row, '[data-figure="oldest_in_flight_age_s"]', `${(c.oldest_in_flight_age_s || 0).toFixed(1)} s`);
  // The backlog at the source, as the broker last said (null: not read, or it cannot say).
  setText(row, '[data-figure="backlog"]', status.backlog == null ? "—" : String(status.backlog));
  const state = row.querySelector('[data-field="state-name"]');
  if (state && state.textContent !== status.state) {
    state.textContent = status.state;
    state.className = `status status-${status.state}`;
  }
  setText(row, '[data-field="reason"]', reasonOf(status));
  const version = row.querySelector('[data-field="version"]');
  if (version) {
    const text = status.version || status.version_error || "—";
    if (version.textContent !== text) version.textContent = text;
  }
  updateThroughput(row, status, at);
}

async function pollFigures(table) {
  const note = document.querySelector("[data-live-at]");
  const problem = document.querySelector("[data-live-problem]");
  try {
    const response = await fetch("/console/listeners/live", {
      headers: { Accept: "application/json" },
      credentials: "same-origin",
      redirect: "manual",
    });
    if (response.type === "opaqueredirect" || response.status === 401) {
      if (problem) problem.textContent = "Live figures stopped: your session ended. Reload the page to log in again.";
      return false;
    }
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const data = await response.json();
    for (const status of data.listeners) {
      const row = table.querySelector(`tr[data-listener="${CSS.escape(status.name)}"]`);
      if (row) updateRow(row, status, data.at);
    }
    if (note) note.textContent = `updated ${new Date(data.at * 1000).toLocaleTimeString()}`;
    if (problem && problem.textContent) problem.textContent = "";
  } catch (error) {
    if (problem) problem.textContent = `Live figures are not updating (${error.message}); retrying.`;
  }
  return true;
}

function setupLiveFigures() {
  const table = document.querySelector("[data-live-figures]");
  if (!table) return;
  const tick = async () => {
    if (await pollFigures(table)) window.setTimeout(tick, LIVE_INTERVAL_MS);
  };
  tick();
}

// --- dead letters: select all --------------------------------------------------------------
function setupSelectAll() {
  const all = document.querySelector("[data-select-all]");
  if (!all) return;
  all.hidden = false;
  const boxes = () => document.querySelectorAll('input[type="checkbox"][name="ids"]');
  all.addEventListener("change", () => boxes().forEach((box) => { box.checked = all.checked; }));
}

// --- copy buttons: <button data-copy="ID"> copies the text of #ID ---------------------------
function copyBySelection(source) {
  const range = document.createRange();
  range.selectNodeContents(source);
  const selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
  try {
    return document.execCommand("copy");
  } catch (error) {
    return false;
  }
}

async function copyText(source) {
  const text = source.textContent;
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch (error) {
      // denied: fall back to selecting the text
    }
  }
  return copyBySelection(source);
}

function setupCopyButtons() {
  document.querySelectorAll("button[data-copy]").forEach((button) => {
    const source = document.getElementById(button.dataset.copy);
    if (!source) return;
    const status = document.querySelector(`[data-copied-for="${CSS.escape(button.dataset.copy)}"]`);
    button.hidden = false;
    button.addEventListener("click", async () => {
      const copied = await copyText(source);
      if (status) status.textContent = copied ? "Copied" : "Selected: press Ctrl+C to copy";
    });
  });
}

function focusFormError() {
  const error = document.getElementById("form-error");
  if (error) error.focus();
}

document.addEventListener("DOMContentLoaded", () => {
  setupTryForm();
  focusOutcome();
  focusFormError();
  setupLiveFigures();
  setupSelectAll();
  setupCopyButtons();
});
