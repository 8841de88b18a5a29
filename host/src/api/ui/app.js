// The dashboard: polls this node's API every REFRESH_MS and renders it.
// Plain JavaScript, no framework and no CDN: it is served by the node
// itself (embedded in the binary) and works offline.
"use strict";

const REFRESH_MS = 2000;
const MAX_KEYS_SHOWN = 500;

const $ = (id) => document.getElementById(id);
const token = () => sessionStorage.getItem("iroh-raft-token") || "";

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (token()) h["Authorization"] = "Bearer " + token();
  return h;
}

async function api(path, options) {
  const response = await fetch(path, Object.assign({}, options, { headers: headers(options && options.headers) }));
  const text = await response.text();
  if (!response.ok) {
    let message = text;
    try { const body = JSON.parse(text); message = body.error.message + " (" + body.error.code + ")"; } catch (_) {}
    throw new Error(path + ": " + response.status + " " + message);
  }
  return text;
}

function text(id, value) { $(id).textContent = value; }

function cell(row, value, className) {
  const td = document.createElement("td");
  td.textContent = value;
  if (className) td.className = className;
  row.appendChild(td);
}

function showError(error) {
  const p = $("error");
  p.hidden = !error;
  p.textContent = error ? String(error.message || error) : "";
}

function agoMs(ms) {
  if (ms === null || ms === undefined) return "";
  if (ms < 1000) return ms + " ms ago";
  return (ms / 1000).toFixed(1) + " s ago";
}

function renderStatus(s) {
  text("node-title", "· node " + s.id);
  text("leader", s.leader_id === null || s.leader_id === undefined ? "none" : "node " + s.leader_id);
  text("term", s.term);
  text("role", s.role);
  text("commit-index", s.commit_index);
  text("applied-index", s.applied_index);
  text("last-index", s.last_index);
  text("first-log-index", s.first_log_index);
  text("snapshot", s.snapshot_index === null || s.snapshot_index === undefined ? "none" : "at index " + s.snapshot_index);
  text("pending", s.pending_proposals);
  const check = $("state-check");
  if (s.diverged) {
    check.textContent = "DIVERGED at index " + s.diverged.index + " (majority: nodes " + s.diverged.majority.join(", ") + ")";
    check.className = "bad";
  } else {
    check.textContent = s.last_verified_state_check ? "agreed at index " + s.last_verified_state_check : "none yet";
    check.className = s.last_verified_state_check ? "ok" : "";
  }
  const body = $("members").querySelector("tbody");
  body.replaceChildren();
  for (const m of s.members) {
    const row = document.createElement("tr");
    const isLeader = m.id === s.leader_id;
    row.className = "member" + (isLeader ? " leader" : "");
    row.dataset.id = m.id;
    cell(row, m.id);
    cell(row, isLeader ? "leader" : m.voter ? "follower" : "learner");
    cell(row, m.match_index === null || m.match_index === undefined ? "" : m.match_index);
    cell(row, m.match_index === null || m.match_index === undefined ? "" : Math.max(0, s.commit_index - m.match_index));
    cell(row, m.id === s.id ? "(this node)" : agoMs(m.last_contact_ms));
    cell(row, (m.addrs || []).join(" "));
    body.appendChild(row);
  }
  text("members-note", s.role === "leader" ? "" : "Match indexes and lag are known to the leader only: open its dashboard for them.");
  const g = s.guest;
  text("guest", g.name + " " + g.version + " (" + g.hash.slice(0, 12) + "), active since index " + g.since_index);
  text("guest-world", g.world || "?");
  text("guest-store", g.store ? g.store.keys + " keys, " + (g.store.bytes / 1048576).toFixed(1) + " MiB" : "in guest memory");
  text("guest-entries", g.applied_entries + " applied, " + g.failed_entries + " failed" + (g.refusing_commands ? " · REFUSING COMMANDS" : ""));
}

function renderComponents(history) {
  const body = $("components").querySelector("tbody");
  body.replaceChildren();
  for (const r of history.records.slice().reverse()) {
    const row = document.createElement("tr");
    cell(row, r.index);
    cell(row, r.kind);
    cell(row, r.name);
    cell(row, r.version);
    cell(row, r.hash.slice(0, 12));
    const failed = r.outcome && r.outcome.status === "failed";
    cell(row, failed ? "failed: " + r.outcome.reason : "activated", failed ? "bad" : "");
    body.appendChild(row);
  }
}

// Counters from the Prometheus text: name{labels} value.
function metric(textBody, name, labelFilter) {
  let sum = 0;
  for (const line of textBody.split("\n")) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== " " && rest[0] !== "{") continue;
    if (labelFilter && !rest.includes(labelFilter)) continue;
    sum += parseFloat(line.slice(line.lastIndexOf(" ") + 1)) || 0;
  }
  return sum;
}

let previous = null;

function renderRates(status, metricsText) {
  const now = performance.now();
  const sample = {
    at: now,
    applied: status.applied_index,
    proposals: metric(metricsText, "iroh_raft_proposals_total"),
    latencySum: metric(metricsText, "iroh_raft_proposal_duration_seconds_sum"),
    latencyCount: metric(metricsText, "iroh_raft_proposal_duration_seconds_count"),
  };
  if (previous) {
    const seconds = (sample.at - previous.at) / 1000;
    text("apply-rate", ((sample.applied - previous.applied) / seconds).toFixed(1) + " /s");
    text("propose-rate", ((sample.proposals - previous.proposals) / seconds).toFixed(1) + " /s");
    const n = sample.latencyCount - previous.latencyCount;
    text("propose-latency", n > 0 ? ((1000 * (sample.latencySum - previous.latencySum)) / n).toFixed(2) + " ms" : "no proposals");
  }
  previous = sample;
}

async function refresh() {
  try {
    const status = JSON.parse(await api("/v1/status"));
    renderStatus(status);
    const [components, metricsText] = await Promise.all([api("/v1/components"), api("/metrics")]);
    renderComponents(JSON.parse(components));
    renderRates(status, metricsText);
    showError(null);
  } catch (error) {
    showError(error);
  }
}

// The live key browser: one watch at a time, read as a stream of lines.
let watching = null;

function showKey(key, value, index) {
  const body = $("keys").querySelector("tbody");
  let row = body.querySelector('tr[data-key="' + CSS.escape(key) + '"]');
  if (value === null) {
    if (row) row.remove();
    return;
  }
  if (!row) {
    if (body.children.length >= MAX_KEYS_SHOWN) return;
    row = document.createElement("tr");
    row.dataset.key = key;
    cell(row, key);
    cell(row, "", "value");
    cell(row, "");
    body.appendChild(row);
  }
  row.children[1].textContent = value;
  row.children[2].textContent = index;
}

async function watch(prefix) {
  if (watching) watching.abort();
  const controller = new AbortController();
  watching = controller;
  $("keys").querySelector("tbody").replaceChildren();
  const url = "/v1/watch?since=0&prefix=" + encodeURIComponent(prefix);
  let response = await fetch(url, { headers: headers(), signal: controller.signal });
  if (response.status === 410) {
    // The history does not reach back to the start: from now on.
    response = await fetch("/v1/watch?prefix=" + encodeURIComponent(prefix), { headers: headers(), signal: controller.signal });
  }
  if (!response.ok) {
    const body = await response.text();
    let message = body;
    try { message = JSON.parse(body).error.message; } catch (_) {}
    text("watch-note", "cannot watch: " + message);
    return;
  }
  text("watch-note", "watching " + (prefix ? "keys under " + prefix : "every key") + "…");
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffered += decoder.decode(value, { stream: true });
    let newline;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      const line = JSON.parse(buffered.slice(0, newline));
      buffered = buffered.slice(newline + 1);
      if (line.type === "changes") {
        for (const e of line.events) {
          const key = e.key.text !== undefined ? e.key.text : "base64:" + e.key.base64;
          const shown = e.op === "delete" ? null : e.value.text !== undefined ? e.value.text : "base64:" + e.value.base64;
          showKey(key, shown, line.index);
        }
      } else if (line.type === "compacted" || line.type === "error") {
        text("watch-note", "the watch ended: " + JSON.stringify(line));
        return;
      }
    }
  }
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem("iroh-raft-token", $("token").value);
  refresh();
});

$("watch-form").addEventListener("submit", (event) => {
  event.preventDefault();
  watch($("watch-prefix").value).catch((error) => text("watch-note", "the watch ended: " + error.message));
});

$("dry-run-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = $("dry-run-file").files[0];
  if (!file) return;
  const report = $("dry-run-report");
  report.hidden = false;
  report.textContent = "uploading " + file.name + "…";
  try {
    const body = await api("/v1/upgrade?dry_run=true", {
      method: "POST",
      headers: { "Content-Type": "application/wasm" },
      body: await file.arrayBuffer(),
    });
    report.textContent = JSON.stringify(JSON.parse(body), null, 2);
  } catch (error) {
    report.textContent = String(error.message || error);
  }
});

refresh();
setInterval(refresh, REFRESH_MS);
if (new URLSearchParams(location.search).has("watch")) {
  watch(new URLSearchParams(location.search).get("watch")).catch(() => {});
}
