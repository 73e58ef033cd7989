// bandit-router dashboard: polls /api/v1/dashboard and draws every experiment with plain DOM
// and SVG (no library, nothing fetched from elsewhere). Every number cell carries its exact
// value in data-value, so tests and scrapers need not parse the formatted text.
"use strict";

const REFRESH_MS = 2000;
const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#3261c6", "#e8710a", "#1a7f37", "#c62828", "#8e44ad", "#00838f",
                "#b8860b", "#d81b60", "#5d4037", "#546e7a"];
let refreshes = 0;
// The operator token lives in this tab's sessionStorage only; without it the page is read-only.
const TOKEN_KEY = "bandit-router-token";
let actionsOffered = false;

function token() {
  return actionsOffered ? sessionStorage.getItem(TOKEN_KEY) || "" : "";
}

async function act(action, experiment, arm) {
  const what = action + " " + experiment + (arm ? "/" + arm : "");
  const reason = window.prompt("Reason for " + what + " (goes to the audit log):", "");
  if (reason === null) return;
  const status = document.getElementById("status");
  try {
    const response = await fetch("api/v1/actions", {
      method: "POST",
      headers: { "Content-Type": "application/json", "Authorization": "Bearer " + token() },
      body: JSON.stringify({ action: action, experiment: experiment, arm: arm || "",
                             reason: reason }),
    });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || response.statusText);
    status.className = "";
    status.textContent = what + ": done (version " + body.version + ")";
  } catch (error) {
    status.className = "error";
    status.textContent = what + " refused: " + error.message;
  }
}

function actionButton(label, action, experiment, arm) {
  const button = el("button", { type: "button", class: "action", "data-action": action }, label);
  button.addEventListener("click", () => act(action, experiment, arm));
  return button;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  return node;
}

function fixed(value, digits) {
  return value === null || value === undefined ? "–" : value.toFixed(digits);
}

function count(value) {
  if (value === null || value === undefined) return "–";
  return Number.isInteger(value) ? String(value) : value.toFixed(2);
}

function percent(value) {
  return value === null || value === undefined ? "–" : (100 * value).toFixed(1) + "%";
}

function bar(fraction, color) {
  const width = 60;
  const box = svg("svg", { width: width, height: 10, class: "bar", "aria-hidden": "true" });
  box.append(svg("rect", { x: 0, y: 0, width: width, height: 10, fill: "#eceff3" }));
  const filled = Math.max(0, Math.min(1, fraction || 0)) * width;
  box.append(svg("rect", { x: 0, y: 0, width: filled, height: 10, fill: color }));
  return box;
}

function swatch(color) {
  const box = svg("svg", { width: 11, height: 11, class: "swatch", "aria-hidden": "true" });
  box.append(svg("rect", { x: 0, y: 0, width: 11, height: 11, rx: 2, fill: color }));
  return box;
}

// The posterior mean as a dot on its 95% interval, on a scale shared by the experiment's arms.
function interval(arm, low, high, color) {
  const width = 90;
  const box = svg("svg", { width: width, height: 12, class: "bar", "aria-hidden": "true" });
  if (arm.ci_low === null || arm.ci_high === null || arm.mean === null || !(high > low)) {
    return box;
  }
  const x = (v) => 3 + ((v - low) / (high - low)) * (width - 6);
  box.append(svg("line", { x1: x(arm.ci_low), x2: x(arm.ci_high), y1: 6, y2: 6,
                           stroke: color, "stroke-width": 2 }));
  box.append(svg("circle", { cx: x(arm.mean), cy: 6, r: 3.5, fill: color }));
  return box;
}

function numberCell(field, value, text, extra) {
  const cell = el("td", { class: "num", "data-field": field,
                          "data-value": value === null ? "" : String(value) }, text);
  if (extra) cell.append(extra);
  return cell;
}

function armRow(experiment, arm, color, low, high) {
  const state = el("td", { class: "state", "data-field": "state", "data-value": arm.state },
                   el("span", { class: "badge " + arm.state }, arm.state));
  if (arm.pinned) state.append(" ", el("span", { class: "badge pinned" }, "pinned"));
  const drift = el("td", { class: "num", "data-field": "drift",
                           "data-value": arm.drift_detected ? "alarm" : "ok" });
  if (arm.drift_detected) {
    drift.append(el("span", { class: "alarm-text" }, "ALARM " + fixed(arm.drift_statistic, 1)));
  } else {
    drift.append(fixed(arm.drift_statistic, 1));
  }
  const cells = [];
  if (token()) {
    const actions = el("td", { class: "actions" });
    if (arm.state === "active" && !arm.pinned) {
      actions.append(actionButton("pin", "pin", experiment.name, arm.arm));
    }
    actions.append(arm.state === "active"
      ? actionButton("disable", "disable", experiment.name, arm.arm)
      : actionButton("enable", "enable", experiment.name, arm.arm));
    cells.push(actions);
  }
  return el("tr", { "data-experiment": experiment.name, "data-arm": arm.arm },
    el("td", { "data-field": "arm" }, swatch(color), arm.arm),
    state,
    numberCell("recent_share", arm.recent_share, percent(arm.recent_share),
               bar(arm.recent_share, color)),
    numberCell("decisions", arm.decisions, count(arm.decisions)),
    numberCell("rewards", arm.rewards, count(arm.rewards)),
    numberCell("mean", arm.mean, fixed(arm.mean, 4)),
    el("td", { class: "num", "data-field": "interval",
               "data-value": arm.ci_low + " " + arm.ci_high },
       "[" + fixed(arm.ci_low, 4) + ", " + fixed(arm.ci_high, 4) + "]",
       interval(arm, low, high, color)),
    numberCell("prob_best", arm.prob_best, fixed(arm.prob_best, 3), bar(arm.prob_best, color)),
    drift, ...cells);
}

// Stacked areas of each arm's share per sampling interval over the history.
function history(experiment, colors) {
  const points = experiment.share_history;
  const wrap = el("div", { class: "history" });
  if (points.length < 2) {
    wrap.append(el("p", {}, "Traffic share over time: collecting samples…"));
    return wrap;
  }
  const width = 720, height = 110, t0 = points[0].t, t1 = points[points.length - 1].t;
  const chart = svg("svg", { width: width, height: height + 16, role: "img",
                             "aria-label": "traffic share per arm over time" });
  const x = (t) => (t1 > t0 ? ((t - t0) / (t1 - t0)) * width : 0);
  const arms = experiment.arms.map((arm) => arm.arm);
  let lower = points.map(() => 0);
  arms.forEach((name, index) => {
    const upper = points.map((p, i) => lower[i] + (p.shares[name] || 0));
    const top = points.map((p, i) => x(p.t) + "," + (height - upper[i] * height));
    const bottom = points.map((p, i) => x(p.t) + "," + (height - lower[i] * height)).reverse();
    chart.append(svg("polygon", { points: top.concat(bottom).join(" "),
                                  fill: colors[index], "fill-opacity": 0.75 }));
    lower = upper;
  });
  const minutes = Math.round((t1 - t0) / 60);
  const label = svg("text", { x: 0, y: height + 13, "font-size": 11, fill: "#5f6b7a" });
  label.textContent = "traffic share per arm, last " + (minutes || "<1") + " min";
  chart.append(label);
  wrap.append(chart);
  return wrap;
}

function experimentSection(experiment) {
  const colors = experiment.arms.map((_, i) => COLORS[i % COLORS.length]);
  const title = el("h2", {}, experiment.name,
                   el("span", { class: "badge" }, experiment.policy),
                   el("span", { class: "badge" }, "state " + experiment.state_version));
  if (experiment.paused) title.append(el("span", { class: "badge paused" }, "paused"));
  if (experiment.pin && experiment.pin.arm) {
    title.append(el("span", { class: "badge pinned", "data-field": "pin" },
                    "pinned to " + experiment.pin.arm +
                    (experiment.pin.reason ? " (" + experiment.pin.reason + ")" : "")));
  }
  if (experiment.pin && experiment.pin.units) {
    title.append(el("span", { class: "badge pinned" }, experiment.pin.units + " unit pins"));
  }
  if (experiment.arms.some((arm) => arm.drift_detected)) {
    title.append(el("span", { class: "badge alarm" }, "drift alarm"));
  }
  if (token()) {
    if (experiment.pin && experiment.pin.arm) {
      title.append(actionButton("unpin", "unpin", experiment.name, ""));
    }
    title.append(experiment.paused
      ? actionButton("resume", "resume", experiment.name, "")
      : actionButton("pause", "pause", experiment.name, ""));
  }
  const lows = experiment.arms.map((a) => a.ci_low).filter((v) => v !== null);
  const highs = experiment.arms.map((a) => a.ci_high).filter((v) => v !== null);
  const low = Math.min(...lows), high = Math.max(...highs);
  const columns = ["arm", "state", "share (5 min)", "decisions", "rewards", "posterior mean",
                   "95% interval", "P(best)", "drift"];
  if (token()) columns.push("actions");
  const head = el("tr", {}, ...columns.map((name) => el("th", { scope: "col" }, name)));
  const table = el("table", {}, el("thead", {}, head),
    el("tbody", {}, ...experiment.arms.map((arm, i) =>
      armRow(experiment, arm, colors[i], low, high))));
  return el("section", { class: "experiment", "data-experiment": experiment.name },
            title, el("p", { class: "recommendation" }, experiment.recommendation),
            table, history(experiment, colors));
}

function showOperatorForm() {
  const form = document.getElementById("operator");
  form.hidden = !actionsOffered;
  document.getElementById("forget-token").hidden = !token();
  document.body.setAttribute("data-actions", token() ? "on" : "off");
}

function setUpOperatorForm() {
  const form = document.getElementById("operator");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const input = document.getElementById("token");
    if (input.value) sessionStorage.setItem(TOKEN_KEY, input.value);
    input.value = "";
    showOperatorForm();
  });
  document.getElementById("forget-token").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showOperatorForm();
  });
}

function render(document_) {
  actionsOffered = Boolean(document_.actions);
  showOperatorForm();
  const main = document.getElementById("experiments");
  const sections = document_.experiments.map(experimentSection);
  if (sections.length === 0) sections.push(el("p", {}, "No experiments yet."));
  main.replaceChildren(...sections);
  refreshes += 1;
  document.body.setAttribute("data-refreshes", String(refreshes));
  document.body.setAttribute("data-generated-at", String(document_.generated_at));
  const status = document.getElementById("status");
  status.className = "";
  status.textContent = "updated " + new Date(document_.generated_at * 1000).toLocaleTimeString() +
    " · refreshes every " + REFRESH_MS / 1000 + " s";
}

async function refresh() {
  try {
    const response = await fetch("api/v1/dashboard", { cache: "no-store" });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || response.statusText);
    render(body);
  } catch (error) {
    const status = document.getElementById("status");
    status.className = "error";
    status.textContent = "cannot refresh: " + error.message + " (retrying)";
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}

setUpOperatorForm();
refresh();
