// Bootstrap failures made readable: the message split into its problems (each tied to the field
// it names when it names one), and the structured details as tables and sentences. Used by the
// wizard's Check and by the progress view (api-contract §5 lists the codes and their details).

import { el } from "./util.js";

const FIELD_PREFIX = /^([A-Za-z_]\w*(?:\.\w+|\[\d+\])*):\s/;
const SHOWN_ELSEWHERE = new Set([
  "message", "fields", "field", "mismatches", "offset_ms", "uncertainty_ms", "max_offset_ms",
  "member", "current_rack_ids", "failed_nodes", "replace_candidate", "retryable", "phase",
]);

// Which form field an API field path is about, for the wizard's create or join form.
export function fieldIdFor(path, action) {
  const join = action === "join_cluster";
  const base = path.replace(/\[\d+\]/g, "");
  const ids = {
    "cluster.name": "cluster-name",
    "cluster.nodes": "join-nodes",
    "cluster.ca_fingerprint": "ca-fingerprint",
    credentials: join ? "join-user" : "admin-email",
    "credentials.username": join ? "join-user" : "admin-email",
    "credentials.password": join ? "join-password" : "admin-password",
    license: "license",
    "policy.rack_aware": "rack-aware",
    "node.identity.addr": "node-addr",
    "node.identity.external_addr": "external-addr",
    "node.identity.rack_id": "rack-id",
    "node.identity.uid": "replace-uid",
    "node.paths.persistent_path": "persistent-path",
    "node.paths.ephemeral_path": "ephemeral-path",
    "node.paths.bigstore_path": "bigstore-path",
  };
  return ids[base] || null;
}

// The field an error code is about when its message names none.
export function fieldIdForCode(code, details, action) {
  if (details && typeof details.field === "string") return fieldIdFor(details.field, action);
  const join = action === "join_cluster";
  return {
    rack_id_required: "rack-id",
    invalid_license: join ? null : "license",
    access_denied: join ? "join-password" : null,
    connect_error: join ? "join-nodes" : null,
  }[code] || null;
}

// The problems of a failure: [{path, text}], path null when the text names no field.
export function problemsOf(details, fallback) {
  const message = (details && details.message) || fallback || "";
  return message
    .split(/;\s+(?=[A-Za-z_][\w.[\]]*:\s)/)
    .filter(Boolean)
    .map((text) => {
      const match = FIELD_PREFIX.exec(text);
      return { path: match ? match[1] : null, text };
    });
}

function valueText(value) {
  if (value === null || value === undefined) return "—";
  return typeof value === "string" ? value : JSON.stringify(value);
}

function table(caption, headings, rows) {
  return el(
    "div",
    { class: "table-wrap" },
    el(
      "table",
      {},
      el("caption", { text: caption }),
      el("thead", {}, el("tr", {}, headings.map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, rows.map((row) => el("tr", {}, row.map((cell) => el("td", { text: valueText(cell) }))))),
    ),
  );
}

// DOM nodes for the structured details (mismatches, clock offset, racks, failed nodes, the rest).
export function detailNodes(code, details) {
  const d = details || {};
  const nodes = [];
  if (Array.isArray(d.mismatches) && d.mismatches.length) {
    nodes.push(
      table(
        "Settings that differ from the cluster's",
        ["field", "cluster value", "this node's value"],
        d.mismatches.map((m) => [m.field, m.cluster_value, m.node_value]),
      ),
    );
  }
  if (d.offset_ms !== undefined) {
    const uncertainty = d.uncertainty_ms !== undefined ? ` ± ${d.uncertainty_ms} ms` : "";
    const bound = d.max_offset_ms !== undefined ? `; the bound is ${d.max_offset_ms} ms` : "";
    const member = d.member ? ` (measured against ${d.member})` : "";
    nodes.push(el("p", { class: "clock", text: `Clock offset: ${d.offset_ms} ms${uncertainty}${bound}${member}.` }));
  }
  if (Array.isArray(d.current_rack_ids)) {
    nodes.push(el("p", { text: `Racks in the cluster: ${d.current_rack_ids.join(", ") || "none"}.` }));
  }
  if (Array.isArray(d.failed_nodes)) {
    nodes.push(
      table(
        "Failed nodes of the cluster",
        ["uid", "rack"],
        d.failed_nodes.map((n) => [n.uid, n.rack_id || ""]),
      ),
    );
  }
  const rest = Object.entries(d).filter(([key]) => !SHOWN_ELSEWHERE.has(key));
  if (rest.length) {
    nodes.push(el("dl", { class: "facts" }, rest.map(([k, v]) => [el("dt", { text: k }), el("dd", { text: valueText(v) })])));
  }
  if (d.phase || d.retryable !== undefined) {
    const parts = [];
    if (d.phase) parts.push(`during phase “${d.phase}”`);
    if (d.retryable !== undefined) parts.push(d.retryable ? "retrying the same request may succeed" : "the request must change to succeed");
    nodes.push(el("p", { class: "help", text: `Failed ${parts.join("; ")}.` }));
  }
  return nodes;
}

// A whole failure as one box: the code, each problem, the details.
export function failureNodes(code, details, fallback) {
  const problems = problemsOf(details, fallback);
  const nodes = [
    el("p", {}, el("span", { class: "code-tag", text: code || "error" }), problems.length === 1 ? problems[0].text : "The request has these problems:"),
  ];
  if (problems.length > 1) nodes.push(el("ul", {}, problems.map((p) => el("li", { text: p.text }))));
  return [...nodes, ...detailNodes(code, details)];
}
