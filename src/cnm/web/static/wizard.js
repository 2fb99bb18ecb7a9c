// The setup wizard shown before bootstrap: create or join, live checks as the user types, Check
// (POST /v1/bootstrap/validate/{action}) with every problem shown at its field, and the start
// of the action. What was typed stays in the form (the view is only hidden) so "try again"
// after a failed bootstrap starts from it.

import { ApiError, call } from "./api.js";
import { detailNodes, fieldIdFor, fieldIdForCode, problemsOf } from "./details.js";
import { $, el, formatBytes, formatDuration, splitList } from "./util.js";

const LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
const RACK_ID = /^[A-Za-z](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?$/;
const MAX_NAME = 64;
const MESSAGE_IDS = [
  "cluster-name", "admin-email", "admin-password", "admin-password2", "license", "join-nodes",
  "join-user", "join-password", "ca-fingerprint", "node-addr", "external-addr", "rack-id",
  "persistent-path", "ephemeral-path", "bigstore-path",
];

let minLength = 8;
let onStarted = () => {};

export function action() {
  return $("#wizard input[name=action]:checked").value;
}

function setFieldMessage(id, text, { ok = false } = {}) {
  const msg = document.getElementById(`${id}-msg`);
  const input = document.getElementById(id);
  if (msg) {
    msg.textContent = text;
    msg.classList.toggle("ok", ok);
  }
  if (input) input.setAttribute("aria-invalid", text && !ok ? "true" : "false");
}

function addFieldMessage(id, text) {
  const msg = document.getElementById(`${id}-msg`);
  const current = msg ? msg.textContent : "";
  setFieldMessage(id, current ? `${current}\n${text}` : text);
}

export function clearMessages() {
  for (const id of MESSAGE_IDS) setFieldMessage(id, "");
  const result = $("#check-result");
  result.hidden = true;
  result.replaceChildren();
}

// The cluster-name rule of the API (RFC 952/1123 labels), said in words.
export function clusterNameProblem(name) {
  if (!name) return "Required: the cluster's fully qualified domain name.";
  if (name.length > MAX_NAME) return `At most ${MAX_NAME} characters (this one has ${name.length}).`;
  const labels = name.split(".");
  const bad = labels.find((label) => !LABEL.test(label));
  if (bad !== undefined) {
    return bad === ""
      ? "An empty label: two dots in a row, or a dot at the start or the end."
      : `“${bad}”: labels are letters, digits and hyphens, not starting or ending with a hyphen.`;
  }
  return "";
}

function passwordStrength(password) {
  if (!password) return ["", ""];
  const classes = [/[a-z]/, /[A-Z]/, /[0-9]/, /[^A-Za-z0-9]/].filter((re) => re.test(password)).length;
  const score = (password.length >= 12 ? 2 : password.length >= minLength ? 1 : 0) + (classes >= 3 ? 1 : 0);
  if (password.length < minLength || score <= 1) return ["weak", "Strength: weak."];
  return score === 2 ? ["fair", "Strength: fair."] : ["strong", "Strength: strong."];
}

function liveChecks() {
  const nameInput = $("#cluster-name");
  nameInput.addEventListener("input", () => {
    const problem = nameInput.value ? clusterNameProblem(nameInput.value.trim()) : "";
    setFieldMessage("cluster-name", problem || (nameInput.value ? "Valid name." : ""), { ok: !problem });
  });
  const pass = $("#admin-password");
  const again = $("#admin-password2");
  const passwordChecks = () => {
    const [level, text] = passwordStrength(pass.value);
    const strength = $("#strength");
    strength.textContent = text;
    strength.className = `strength ${level}`;
    setFieldMessage(
      "admin-password",
      pass.value && pass.value.length < minLength ? `Too short: ${pass.value.length} of at least ${minLength} characters.` : "",
    );
    setFieldMessage("admin-password2", again.value && again.value !== pass.value ? "The two passwords differ." : "");
  };
  pass.addEventListener("input", passwordChecks);
  again.addEventListener("input", passwordChecks);
  const rack = $("#rack-id");
  rack.addEventListener("input", () => {
    const value = rack.value.trim();
    setFieldMessage("rack-id", value && !RACK_ID.test(value) ? "Letters, digits, - and _; starting with a letter, ending with a letter or digit; at most 63 characters." : "");
  });
  $("#rack-aware").addEventListener("change", updateRackNeed);
  $("#license-file").addEventListener("change", async (event) => {
    const [file] = event.target.files;
    if (!file) return;
    $("#license").value = (await file.text()).trim();
    setFieldMessage("license", `Read from ${file.name}.`, { ok: true });
  });
}

function updateRackNeed() {
  const needed = action() === "create_cluster" && $("#rack-aware").checked;
  $("#rack-id-need").textContent = needed ? "(required: the cluster is rack-aware)" : "(optional)";
  $("#rack-id").required = needed;
}

function updateMode() {
  const create = action() === "create_cluster";
  for (const node of document.querySelectorAll(".only-create")) node.hidden = !create;
  for (const node of document.querySelectorAll(".only-join")) node.hidden = create;
  $("#submit").textContent = create ? "Create cluster" : "Join cluster";
  updateRackNeed();
  clearMessages();
}

function fillNodeFields(info) {
  const select = $("#node-addr");
  select.replaceChildren(el("option", { value: "", text: "the agent's own address (--addr)" }));
  for (const a of info.available_addresses || []) {
    const iface = a.if_name ? ` (${a.if_name})` : "";
    select.append(el("option", { value: a.address, text: `${a.address}${iface}` }));
  }
  const here = location.hostname.replace(/^\[|\]$/g, "");
  if ([...select.options].some((o) => o.value === here)) select.value = here;
  const paths = [
    ["persistent-path", info.persistent_storage_path, info.persistent_storage_size],
    ["ephemeral-path", info.ephemeral_storage_path, info.ephemeral_storage_size],
    ["bigstore-path", info.bigredis_storage_path, info.bigredis_storage_size],
  ];
  for (const [id, path, size] of paths) {
    document.getElementById(id).value = path || "";
    document.getElementById(`${id}-size`).textContent =
      typeof size === "number" ? `File system size: ${formatBytes(size)}.` : "";
  }
  $("#node-facts").textContent = `Node ${info.short_hostname || ""}: ${info.cores} cores, ${formatBytes(info.total_memory)} memory, ${info.os_version || ""}, up ${formatDuration(info.uptime)}.`;
}

// The body of the request, and the credentials to sign in with once it is done.
export function requestBody() {
  const act = action();
  const identity = {};
  if ($("#node-addr").value) identity.addr = $("#node-addr").value;
  const external = splitList($("#external-addr").value);
  if (external.length) identity.external_addr = external;
  if ($("#rack-id").value.trim()) identity.rack_id = $("#rack-id").value.trim();
  const paths = {};
  for (const [id, key] of [["persistent-path", "persistent_path"], ["ephemeral-path", "ephemeral_path"], ["bigstore-path", "bigstore_path"]]) {
    const value = document.getElementById(id).value.trim();
    if (value) paths[key] = value;
  }
  const body = { action: act, node: { identity, paths } };
  let credentials;
  if (act === "create_cluster") {
    credentials = { username: $("#admin-email").value.trim(), password: $("#admin-password").value };
    body.cluster = { name: $("#cluster-name").value.trim() };
    body.policy = { rack_aware: $("#rack-aware").checked };
    if ($("#license").value.trim()) body.license = $("#license").value.trim();
  } else {
    credentials = { username: $("#join-user").value.trim(), password: $("#join-password").value };
    body.cluster = { nodes: splitList($("#join-nodes").value) };
    const fingerprint = $("#ca-fingerprint").value.trim();
    if (fingerprint) body.cluster.ca_fingerprint = fingerprint;
    if (!$("#repair").hidden) {
      if ($("#wizard input[name=repair]:checked").value === "replace" && $("#replace-uid").value) {
        identity.uid = Number($("#replace-uid").value);
      } else {
        body.override_repair = true;
      }
    }
  }
  body.credentials = credentials;
  return { act, body, credentials };
}

// What the browser can tell before asking the node: shown at the fields; true when all is well.
function localProblems() {
  let fine = true;
  if (action() === "create_cluster") {
    const problem = clusterNameProblem($("#cluster-name").value.trim());
    if (problem) {
      setFieldMessage("cluster-name", problem);
      fine = false;
    }
    if ($("#admin-password").value !== $("#admin-password2").value) {
      setFieldMessage("admin-password2", "The two passwords differ.");
      fine = false;
    }
  }
  return fine;
}

function showRepair(details) {
  const failed = Array.isArray(details.failed_nodes) ? details.failed_nodes : [];
  const candidate = details.replace_candidate;
  const select = $("#replace-uid");
  // The server's candidate (same rack in a rack-aware cluster, else down longest) is preselected
  // and said so: the operator may still pick another failed node.
  select.replaceChildren(
    ...failed.map((n) => el("option", {
      value: n.uid,
      text: `node ${n.uid}${n.rack_id ? ` (rack ${n.rack_id})` : ""}${n.uid === candidate ? " (suggested)" : ""}`,
    })),
  );
  if (candidate !== undefined) select.value = String(candidate);
  const suggestion = candidate !== undefined ? ` The cluster suggests node ${candidate}.` : "";
  $("#repair-text").textContent = `The cluster has ${failed.length} failed node(s). Replace one with this node (it takes the failed node's uid), or add this node as a new one anyway.${suggestion}`;
  $("#repair").hidden = false;
}

// Show a failure (406 bootstrap_status, or a 4xx error body) at the fields it names.
export function showFailure(code, details, fallback) {
  const act = action();
  const result = $("#check-result");
  const general = [];
  for (const problem of problemsOf(details, fallback)) {
    const id = problem.path ? fieldIdFor(problem.path, act) : fieldIdForCode(code, details, act);
    const target = id && document.getElementById(id) && !document.getElementById(id).closest("[hidden]") ? id : null;
    if (target) addFieldMessage(target, `[${code}] ${problem.text}`);
    else general.push(problem.text);
  }
  if (code === "repair_required") showRepair(details || {});
  result.replaceChildren(
    el("p", {}, el("span", { class: "code-tag", text: code || "error" }),
      general.length ? general.join(" ") : "The node refused the request: see the marked fields."),
    ...detailNodes(code, details),
  );
  result.className = "result bad";
  result.hidden = false;
  const firstBad = document.querySelector("#wizard [aria-invalid=true]");
  if (firstBad) firstBad.focus();
}

function showError(error) {
  if (error instanceof ApiError && error.body) {
    const body = error.body;
    // 406 from validate is a bootstrap_status; other 4xx are {description, error_code, fields}.
    const details = body.error_details || { message: body.description, ...body };
    showFailure(body.error_code, details, body.description);
  } else {
    showFailure("unreachable", null, `The node did not answer: ${error.message}`);
  }
}

// Check asks the node even when the browser already sees a problem: the node's verdict, with
// its error codes, is what the request would meet.
async function check() {
  clearMessages();
  localProblems();
  const { act, body } = requestBody();
  const button = $("#check");
  button.disabled = true;
  try {
    await call("POST", `/v1/bootstrap/validate/${act}`, { body, anonymous: true });
    const result = $("#check-result");
    result.replaceChildren(el("p", { text: "Check passed: the node would accept this request." }));
    result.className = "result ok";
    result.hidden = false;
  } catch (error) {
    showError(error);
  } finally {
    button.disabled = false;
  }
}

async function submit(event) {
  event.preventDefault();
  clearMessages();
  if (!localProblems()) return;
  const { act, body, credentials } = requestBody();
  const button = $("#submit");
  button.disabled = true;
  try {
    await call("POST", `/v1/bootstrap/${act}`, { body, anonymous: true });
    onStarted({ action: act, credentials });
  } catch (error) {
    if (error instanceof ApiError && error.status === 409) onStarted({ action: act, credentials });
    else showError(error);
  } finally {
    button.disabled = false;
  }
}

export function initWizard(info, started) {
  onStarted = started;
  fillNodeFields(info);
  $("#min-length").textContent = String(minLength);
  for (const radio of document.querySelectorAll("#wizard input[name=action]")) radio.addEventListener("change", updateMode);
  liveChecks();
  $("#check").addEventListener("click", check);
  $("#wizard").addEventListener("submit", submit);
  updateMode();
}
