// modelbus console: the last hour of a listener's or a model's figures, drawn with uPlot
// (vendored in static/vendor/ by scripts/vendor-uplot). A page with charts has a
// [data-history] section naming the JSON to poll (/console/.../history): the server keeps
// the history, summed over nodes, so a page opened late still shows the last hour.
"use strict";

const HISTORY_POLL_MS = 10000;
const CHART_HEIGHT = 190;
// Okabe-Ito: told apart with the common kinds of colour blindness.
const PALETTE = ["#0072B2", "#009E73", "#E69F00", "#D55E00", "#CC79A7", "#56B4E9", "#000000"];

function fmtRate(v) {
  if (v == null) return "—";
  return `${v.toFixed(v !== 0 && Math.abs(v) < 10 ? 2 : 1)}/s`;
}

function fmtSeconds(v) {
  if (v == null) return "—";
  if (v === 0) return "0";
  if (v < 1) return `${+(v * 1000).toFixed(v < 0.01 ? 1 : 0)} ms`;
  return `${v.toFixed(2)} s`;
}

function fmtCount(v) {
  return v == null ? "—" : String(Math.round(v));
}

function counted(v, one, many) {
  return `${fmtCount(v)} ${Math.round(v) === 1 ? one : many}`;
}

function lastValue(values) {
  for (let i = values.length - 1; i >= 0; i--) if (values[i] != null) return values[i];
  return null;
}

// A series whose legend shows the value under the cursor, or the latest one when the cursor
// is not on the chart.
function series(label, color, fmt, extra) {
  return Object.assign(
    {
      label,
      stroke: color,
      width: 2,
      spanGaps: false,
      value: (u, v, sidx, idx) => fmt(idx == null ? lastValue(u.data[sidx]) : v),
    },
    extra || {},
  );
}

// Clock times on the time axis: with seconds when the ticks are less than a minute apart.
function timeTicks(u, ticks) {
  const seconds = ticks.length > 1 && ticks[1] - ticks[0] < 60;
  const format = seconds ? { hour: "2-digit", minute: "2-digit", second: "2-digit" } : { hour: "2-digit", minute: "2-digit" };
  return ticks.map((t) => new Date(t * 1000).toLocaleTimeString([], format));
}

// The plot's box inside the figure (the figure has padding): the chart never sticks out.
function chartWidth(figure) {
  return Math.max(200, Math.floor(figure.querySelector(".chart-plot").clientWidth));
}

// One chart in a <figure data-chart>: its canvas is an image named by the figure's
// description; uPlot's legend (a table of the values now) stays readable.
function makeChart(figure, spec, times) {
  const plot = figure.querySelector(".chart-plot");
  plot.textContent = "";
  const fmtAxis = spec.axis;
  const opts = {
    width: chartWidth(figure),
    height: CHART_HEIGHT,
    series: [{ label: "Time", value: (u, v) => (v == null ? "now" : new Date(v * 1000).toLocaleTimeString()) }]
      .concat(spec.series),
    axes: [{ values: timeTicks, space: 70 }, { values: (u, ticks) => ticks.map(fmtAxis), size: 70 }],
    scales: { y: { range: (u, min, max) => [0, Math.max(max || 0, spec.floor)] } },
    legend: { live: true },
    // The window is chosen with "show the last" (a drag-zoom would be undone by every poll).
    cursor: { drag: { x: false, y: false } },
  };
  const chart = new uPlot(opts, [times].concat(spec.data), plot);
  chart.root.querySelector(".u-wrap").setAttribute("role", "img");
  const legend = chart.root.querySelector(".u-legend");
  if (legend) legend.setAttribute("aria-label", `${spec.title}, values now or under the pointer`);
  figure.dataset.rendered = "true";
  return chart;
}

// --- a listener ---------------------------------------------------------------------------
function listenerSpecs(h) {
  return {
    rates: {
      title: "Messages per second",
      axis: (v) => (v == null ? "" : `${+v.toFixed(2)}/s`),
      floor: 1,
      series: [
        series("Received", PALETTE[0], fmtRate),
        series("Succeeded", PALETTE[1], fmtRate),
        series("Retried", PALETTE[2], fmtRate, { dash: [6, 3] }),
        series("Dead-lettered", PALETTE[3], fmtRate, { dash: [2, 2] }),
      ],
      data: [h.received_per_s, h.succeeded_per_s, h.retried_per_s, h.dead_lettered_per_s],
    },
    load: {
      title: "In flight and backlog",
      axis: (v) => (v == null ? "" : String(+v.toFixed(2))),
      floor: 1,
      series: [
        series("In flight", PALETTE[0], fmtCount),
        series("Backlog", PALETTE[4], fmtCount, { dash: [6, 3] }),
      ],
      data: [h.in_flight, h.backlog],
    },
    latency: {
      title: "End-to-end latency",
      axis: (v) => (v == null ? "" : fmtSeconds(v)),
      floor: 0.01,
      series: [
        series("p50", PALETTE[1], fmtSeconds, { points: { show: true, size: 4 } }),
        series("p99", PALETTE[3], fmtSeconds, { points: { show: true, size: 4 } }),
      ],
      data: [h.latency_p50_s, h.latency_p99_s],
    },
  };
}

// "hour", "5 minutes": the window an answer covers.
function windowName(h) {
  const minutes = Math.round((h.end - h.start) / 60);
  return minutes === 60 ? "hour" : `${minutes} minutes`;
}

function listenerSummary(h) {
  const t = h.totals;
  return (
    `In the last ${windowName(h)}, over every node: ${fmtCount(t.received)} received, ` +
    `${fmtCount(t.succeeded)} succeeded, ${fmtCount(t.retried)} retried, ` +
    `${fmtCount(t.dead_lettered)} dead-lettered; latency p50 ${fmtSeconds(t.latency_p50_s)}, ` +
    `p99 ${fmtSeconds(t.latency_p99_s)}.`
  );
}

// --- a model ------------------------------------------------------------------------------
function modelSpecs(h) {
  const calls = [];
  const durations = [];
  h.versions.forEach((v, i) => {
    const color = PALETTE[i % PALETTE.length];
    calls.push({ s: series(`${v.version} calls`, color, fmtRate), d: v.calls_per_s });
    calls.push({ s: series(`${v.version} errors`, color, fmtRate, { dash: [2, 3] }), d: v.errors_per_s });
    durations.push({
      s: series(`${v.version}`, color, fmtSeconds, { points: { show: true, size: 4 } }),
      d: v.duration_mean_s,
    });
  });
  return {
    calls: {
      title: "Calls and errors per second",
      axis: (v) => (v == null ? "" : `${+v.toFixed(2)}/s`),
      floor: 1,
      series: calls.map((c) => c.s),
      data: calls.map((c) => c.d),
    },
    duration: {
      title: "Mean duration per input",
      axis: (v) => (v == null ? "" : fmtSeconds(v)),
      floor: 0.01,
      series: durations.map((c) => c.s),
      data: durations.map((c) => c.d),
    },
  };
}

function modelSummary(h) {
  if (!h.versions.length) return `No version of this model ran in the last ${windowName(h)}.`;
  const parts = h.versions.map(
    (v) =>
      `${v.version}: ${counted(v.totals.calls, "call", "calls")}, ` +
      `${counted(v.totals.errors, "error", "errors")}, ` +
      `mean duration ${fmtSeconds(v.totals.duration_mean_s)}`,
  );
  return `In the last ${windowName(h)}, over every node: ${parts.join("; ")}.`;
}

// --- polling ------------------------------------------------------------------------------
const KINDS = {
  listener: { specs: listenerSpecs, summary: listenerSummary },
  model: { specs: modelSpecs, summary: modelSummary },
};

function render(section, kind, h, charts) {
  const specs = KINDS[kind].specs(h);
  for (const figure of section.querySelectorAll("[data-chart]")) {
    const spec = specs[figure.dataset.chart];
    if (!spec) continue;
    const labels = spec.series.map((s) => s.label).join("|");
    const held = charts.get(figure);
    let chart;
    if (held && held.labels === labels) {
      chart = held.chart;
      chart.setData([h.times].concat(spec.data));
    } else {
      if (held) held.chart.destroy();
      chart = makeChart(figure, spec, h.times);
      charts.set(figure, { chart, labels });
    }
    const description = figure.dataset.description || spec.title;
    chart.root.querySelector(".u-wrap").setAttribute("aria-label", `${description}, last ${windowName(h)}`);
  }
  const summary = section.querySelector("[data-history-summary]");
  if (summary) summary.textContent = KINDS[kind].summary(h);
}

function historyUrl(section) {
  const chosen = section.querySelector('input[name="history-window"]:checked');
  return chosen ? `${section.dataset.history}?window_s=${chosen.value}` : section.dataset.history;
}

async function pollHistory(section, charts) {
  const problem = section.querySelector("[data-history-problem]");
  try {
    const response = await fetch(historyUrl(section), {
      headers: { Accept: "application/json" },
      credentials: "same-origin",
      redirect: "manual",
    });
    if (response.type === "opaqueredirect" || response.status === 401) {
      if (problem) problem.textContent = "Charts stopped: your session ended. Reload the page to log in again.";
      return false;
    }
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const url = response.url;
    const h = await response.json();
    // A poll that was overtaken by a change of window draws nothing.
    if (new URL(url).search !== new URL(historyUrl(section), location.href).search) return true;
    render(section, section.dataset.historyKind, h, charts);
    if (problem && problem.textContent) problem.textContent = "";
  } catch (error) {
    if (problem) problem.textContent = `Charts are not updating (${error.message}); retrying.`;
  }
  return true;
}

function setupCharts() {
  const section = document.querySelector("[data-history]");
  if (!section || typeof uPlot === "undefined") return;
  const charts = new Map();
  let timer = null;
  let latest = 0; // only the latest poll schedules the next (a change of window polls at once)
  const tick = async () => {
    const mine = ++latest;
    window.clearTimeout(timer);
    const more = await pollHistory(section, charts);
    if (more && mine === latest) timer = window.setTimeout(tick, HISTORY_POLL_MS);
  };
  const choice = section.querySelector("[data-history-window]");
  if (choice) {
    choice.hidden = false;
    choice.addEventListener("change", tick);
  }
  tick();
  if (typeof ResizeObserver !== "undefined") {
    const resize = new ResizeObserver(() => {
      for (const [figure, held] of charts) held.chart.setSize({ width: chartWidth(figure), height: CHART_HEIGHT });
    });
    resize.observe(section);
  }
}

document.addEventListener("DOMContentLoaded", setupCharts);
