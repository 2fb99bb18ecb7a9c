// The cluster view: name, license, nodes (refreshed every few seconds, down nodes highlighted),
// the cluster check, the CA fingerprint with a copy button, and how to add a node: the exact
// `cnm cluster join` command and the curl body.

import { ApiError, call } from "./api.js";
import { $, copyText, el, formatBytes, formatDuration, formatTime } from "./util.js";

const REFRESH_MS = 3000;
let timer = null;
let viewer = null; // the signed-in user's record

function facts(selector, pairs) {
  $(selector).replaceChildren(
    ...pairs.flatMap(([label, value]) => [el("dt", { text: label }), el("dd", { text: value === undefined || value === null || value === "" ? "—" : String(value) })]),
  );
}

function limit(value) {
  return value === 0 ? "no limit" : value;
}

function renderCluster(cluster) {
  $("#cluster-name-title").textContent = cluster.name || "";
  $("#bar-cluster").textContent = cluster.name || "";
  facts("#cluster-facts", [
    ["name", cluster.name],
    ["created", formatTime(cluster.created_time)],
    ["rack-aware", cluster.rack_aware ? "yes" : "no"],
    ["API ports", `HTTPS ${cluster.cnm_https_port}, HTTP ${cluster.http_support === false ? "off" : cluster.cnm_http_port}`],
    ["password minimum", cluster.password_min_length ? `${cluster.password_min_length} characters` : undefined],
  ]);
  const fp = $("#ca-fp");
  if (fp.value !== (cluster.ca_fingerprint || "")) fp.value = cluster.ca_fingerprint || "";
}

function renderLicense(license) {
  const expires = license.expiration_date ? new Date(license.expiration_date) : null;
  const daysLeft = expires ? Math.floor((expires.getTime() - Date.now()) / 86400000) : null;
  facts("#license-facts", [
    ["kind", (license.features || []).includes("trial") ? "trial" : license.owner ? `licensed to ${license.owner}` : "licensed"],
    ["expires", expires ? `${formatTime(license.expiration_date)}${daysLeft !== null ? ` (${daysLeft >= 0 ? `${daysLeft} days left` : "expired"})` : ""}` : undefined],
    ["shards limit", limit(license.shards_limit)],
    ["nodes limit", limit(license.nodes_limit)],
    ["features", (license.features || []).join(", ")],
  ]);
}

function renderNodes(nodes) {
  const rows = nodes.map((node) => {
    const down = node.status !== "active";
    return el(
      "tr",
      { class: down ? "down" : undefined },
      el("td", { "data-label": "uid", text: node.uid }),
      el("td", { "data-label": "address", text: node.addr }),
      el("td", { "data-label": "rack", text: node.rack_id || "—" }),
      el("td", { "data-label": "status", text: down ? `${node.status} ⚠` : node.status }),
      el("td", { "data-label": "store role", text: node.store_role || "—" }),
      el("td", { "data-label": "memory", text: formatBytes(node.total_memory) }),
      el("td", { "data-label": "uptime", text: formatDuration(node.uptime) }),
    );
  });
  $("#nodes tbody").replaceChildren(...rows);
  $("#nodes-updated").textContent = `${nodes.length} node${nodes.length === 1 ? "" : "s"}, updated ${new Date().toLocaleTimeString()}`;
  renderJoinCommands(nodes);
}

function renderCheck(check) {
  const summary = $("#check-summary");
  summary.textContent = check.cluster_test_result ? "All nodes pass." : "Some nodes fail the check.";
  summary.className = `state ${check.cluster_test_result ? "ok" : "bad"}`;
  $("#check-nodes").replaceChildren(
    ...(check.nodes || []).map((n) => el("li", { class: n.result ? undefined : "bad", text: `node ${n.node_uid}: ${n.result ? "ok" : n.error || "failed"}` })),
  );
}

function shellQuote(text) {
  return /^[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replace(/'/g, "'\\''")}'`;
}

function renderJoinCommands(nodes) {
  const members = nodes.filter((n) => n.status === "active").map((n) => n.addr);
  const memberList = (members.length ? members : nodes.map((n) => n.addr)).join(",");
  const fingerprint = $("#ca-fp").value;
  const admin = viewer && viewer.role === "admin" ? viewer.email : "ADMIN_EMAIL";
  const fpOption = fingerprint ? ` --ca-fingerprint ${shellQuote(fingerprint)}` : "";
  $("#join-command").textContent =
    `echo "$ADMIN_PASSWORD" | cnm --node https://NEW_NODE:9443 --insecure \\\n` +
    `    cluster join --nodes ${shellQuote(memberList)}${fpOption} \\\n` +
    `    -u ${shellQuote(admin)} --password-stdin --wait`;
  const body = {
    action: "join_cluster",
    cluster: { nodes: memberList.split(","), ...(fingerprint ? { ca_fingerprint: fingerprint } : {}) },
    credentials: { username: admin, password: "ADMIN_PASSWORD" },
  };
  $("#join-curl").textContent =
    `curl -s -X POST http://NEW_NODE:8080/v1/bootstrap/join_cluster \\\n    -H 'Content-Type: application/json' -d '${JSON.stringify(body, null, 2)}'`;
}

function problem(error, what) {
  if (error instanceof ApiError && error.status === 403) return `Your role may not see ${what}.`;
  return `${what}: ${error.message}`;
}

async function refresh() {
  const [cluster, license, nodes, check] = await Promise.allSettled([
    call("GET", "/v1/cluster"),
    call("GET", "/v1/license"),
    call("GET", "/v1/nodes"),
    call("GET", "/v1/cluster/check"),
  ]);
  const problems = [];
  if (cluster.status === "fulfilled") renderCluster(cluster.value);
  else problems.push(problem(cluster.reason, "the cluster"));
  if (license.status === "fulfilled") renderLicense(license.value);
  else problems.push(problem(license.reason, "the license"));
  if (nodes.status === "fulfilled") renderNodes(nodes.value);
  else problems.push(problem(nodes.reason, "the nodes"));
  if (check.status === "fulfilled") renderCheck(check.value);
  else {
    $("#check-summary").textContent = problem(check.reason, "the cluster check");
    $("#check-summary").className = "state";
  }
  $("#cluster-msg").textContent = problems.join("\n");
}

let generation = 0; // bumps on start and stop: a refresh loop of an older generation ends

async function loop(mine) {
  try {
    await refresh();
  } finally {
    if (mine === generation) timer = setTimeout(() => loop(mine), REFRESH_MS);
  }
}

export function startCluster(user) {
  viewer = user;
  stopCluster();
  return loop(generation);
}

export function stopCluster() {
  generation += 1;
  clearTimeout(timer);
  timer = null;
}

export function initCluster() {
  $("#copy-fp").addEventListener("click", async () => {
    const input = $("#ca-fp");
    try {
      await copyText(input.value, input);
      $("#copy-msg").textContent = "Copied.";
    } catch (error) {
      $("#copy-msg").textContent = `Select the fingerprint and copy it yourself: ${error.message}`;
    }
  });
}
