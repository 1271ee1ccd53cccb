// modelbus console: the flow map's live figures (flow.html). The page is drawn by the server
// and whole without this script; it polls /console/flow/live and updates each edge's rate
// and messages and each node's state in place.
"use strict";

(() => {
  const POLL_INTERVAL_MS = 2000;

  function rateText(edge) {
    return edge.rate_per_s == null ? "—" : `${edge.rate_per_s.toFixed(1)}/s`;
  }

  function setAll(selector, text) {
    document.querySelectorAll(selector).forEach((el) => {
      if (el.textContent !== text) el.textContent = text;
    });
  }

  function nodeDetail(node) {
    if (node.kind === "listener") return node.reason ? `${node.state}: ${node.reason}` : node.state;
    if (node.kind === "model") {
      if (!node.version) return `${node.spec}: unresolved`;
      return node.spec === node.version ? "resolved" : `${node.spec} → ${node.version}`;
    }
    return null;
  }

  function short(text) {
    return text.length <= 25 ? text : `${text.slice(0, 24)}…`;
  }

  function setState(node) {
    const state = node.state || "none";
    document.querySelectorAll(`[data-node-box="${CSS.escape(node.id)}"]`).forEach((box) => {
      box.setAttribute("class", `flow-box state-${state}`);
    });
    const detail = nodeDetail(node);
    document.querySelectorAll(`[data-node-detail="${CSS.escape(node.id)}"]`).forEach((el) => {
      el.setAttribute("class", `flow-detail state-${state}`);
      if (detail !== null && el.textContent !== short(detail)) el.textContent = short(detail);
    });
    document.querySelectorAll(`[data-node-state="${CSS.escape(node.id)}"]`).forEach((el) => {
      el.className = `status status-${state}`;
      if (el.textContent !== node.state) el.textContent = node.state;
    });
  }

  function sameShape(map, graph) {
    const drawn = new Set([...map.querySelectorAll("[data-node]")].map((el) => el.dataset.node));
    return drawn.size === graph.nodes.length && graph.nodes.every((n) => drawn.has(n.id));
  }

  async function poll(map) {
    const note = document.querySelector("[data-flow-at]");
    const problem = document.querySelector("[data-flow-problem]");
    try {
      const response = await fetch("/console/flow/live", {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
        redirect: "manual",
      });
      if (response.type === "opaqueredirect" || response.status === 401) {
        problem.textContent = "Live figures stopped: your session ended. Reload the page to log in again.";
        return false;
      }
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const graph = await response.json();
      for (const edge of graph.edges) {
        setAll(`[data-edge-rate="${CSS.escape(edge.id)}"]`, rateText(edge));
        setAll(`[data-edge-messages="${CSS.escape(edge.id)}"]`, String(edge.messages));
      }
      graph.nodes.forEach(setState);
      const at = new Date(graph.at * 1000).toLocaleTimeString();
      note.textContent = sameShape(map, graph)
        ? `live, updated ${at}`
        : `updated ${at}; the listeners changed since the map was drawn: reload the page to redraw it`;
      if (problem.textContent) problem.textContent = "";
    } catch (error) {
      problem.textContent = `Live figures are not updating (${error.message}); retrying.`;
    }
    return true;
  }

  document.addEventListener("DOMContentLoaded", () => {
    const map = document.querySelector("[data-flow-map]");
    if (!map) return;
    const tick = async () => {
      if (await poll(map)) window.setTimeout(tick, POLL_INTERVAL_MS);
    };
    window.setTimeout(tick, POLL_INTERVAL_MS);
  });
})();
