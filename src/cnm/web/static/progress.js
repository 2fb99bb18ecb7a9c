// Live progress of a bootstrap: GET /v1/bootstrap twice a second, each state and phase listed
// with the time it was first seen; on `error` the code, the message and the details, and "try
// again" (back to the kept form); on `completed` the cluster CA for download and the way on.
// When the node joins its cluster, GET /v1/bootstrap starts asking for credentials: the ones
// typed in the form are exchanged for a token once, then dropped.
// At create the node's HTTPS certificate changes to one of the new cluster CA: a browser that
// trusted the self-signed one may refuse the new one, which shows here as failed requests.

import { ApiError, call, signIn, signedIn } from "./api.js";
import { failureNodes } from "./details.js";
import { $, el, formatTime } from "./util.js";

const POLL_MS = 500;
let run = 0; // bumps on every start: an older loop sees it changed and stops

function stepText(status) {
  return status.phase ? `${status.state}: ${status.phase}` : status.state;
}

function elapsed(startIso) {
  if (!startIso) return "";
  const seconds = (Date.now() - new Date(startIso).getTime()) / 1000;
  return Number.isFinite(seconds) ? ` (+${Math.max(0, seconds).toFixed(1)} s)` : "";
}

function addStep(status, seen) {
  const list = $("#progress-steps");
  if (!list.children.length && status.state !== "initiated" && status.start_time) {
    // The first answer came after the start (a create takes well under a second): the start
    // still gets its line, at the node's own start time.
    list.append(el("li", { class: "done" }, el("span", { class: "step", text: "initiated" }), el("span", { class: "when", text: formatTime(status.start_time) })));
  }
  for (const item of list.children) item.className = "done";
  const when = status.state === "completed" || status.state === "error" ? status.end_time : null;
  // The node's times are whole seconds: a sub-second run says so rather than "0 s".
  const seconds = when && status.start_time ? (new Date(when) - new Date(status.start_time)) / 1000 : null;
  const total = seconds === null || Number.isNaN(seconds) ? "" : ` (took ${seconds < 1 ? "under 1 s" : `${Math.round(seconds)} s`})`;
  const timeText = when ? `${formatTime(when)}${total}` : `${new Date().toLocaleTimeString()}${elapsed(status.start_time)}`;
  const cls = status.state === "error" ? "failed" : status.state === "completed" ? "done" : "current";
  list.append(el("li", { class: cls }, el("span", { class: "step", text: stepText(status) }), el("span", { class: "when", text: timeText })));
  seen.add(stepText(status));
}

async function offerCa() {
  try {
    const answer = await call("GET", "/v1/join/ca", { anonymous: true });
    const link = $("#ca-download");
    const old = link.getAttribute("href");
    if (old) URL.revokeObjectURL(old);
    link.href = URL.createObjectURL(new Blob([answer.ca_pem], { type: "application/x-pem-file" }));
    link.title = `SHA-256 ${answer.ca_fingerprint}`;
    link.hidden = false;
    return answer.ca_fingerprint;
  } catch {
    return null;
  }
}

function showCertNotice(creating) {
  const box = $("#progress-cert");
  box.replaceChildren(
    el("p", { text: creating
      ? "The node now serves an HTTPS certificate issued by the new cluster CA, and this browser refuses it for the moment."
      : "The node cannot be reached right now." }),
    el("p", { text: `Reload this page and accept the new certificate, or continue over http://${location.hostname}:8080/ while HTTP is enabled; this page keeps trying meanwhile.` }),
  );
  box.hidden = false;
}

export function startProgress({ action, credentials }, { onCompleted, onTryAgain, onNeedSignIn }) {
  run += 1;
  const mine = run;
  let creds = credentials || null;
  const creating = action === "create_cluster";
  const seen = new Set();
  $("#progress-title").textContent = creating ? "Creating the cluster" : action === "join_cluster" ? "Joining the cluster" : "Bootstrap";
  $("#progress-steps").replaceChildren();
  for (const id of ["#progress-error", "#progress-cert", "#try-again", "#ca-download", "#open-cluster"]) $(id).hidden = true;
  const stateLine = $("#progress-state");
  stateLine.className = "state";
  stateLine.textContent = "Starting…";

  const finish = async (status) => {
    stateLine.textContent = status.state;
    if (status.state === "completed") {
      stateLine.className = "state ok";
      $("#progress-title").textContent = creating ? "Cluster created" : action === "join_cluster" ? "Node joined the cluster" : "Bootstrap completed";
      const fingerprint = await offerCa();
      if (fingerprint) {
        stateLine.textContent = "completed";
        const note = $("#progress-cert");
        note.replaceChildren(
          el("p", { text: `Cluster CA, SHA-256 fingerprint: ${fingerprint}` }),
          el("p", { text: creating
            ? "The node's HTTPS certificate is now issued by this CA (it was self-signed). Download the CA and add it to your browser's or system's trusted authorities to connect without a warning; give the fingerprint to the nodes that join."
            : "The node's HTTPS certificate is now issued by this CA. Download it to trust the cluster's nodes." }),
        );
        note.hidden = false;
      }
      const open = $("#open-cluster");
      open.hidden = false;
      open.onclick = () => onCompleted();
      open.focus();
    } else {
      stateLine.className = "state bad";
      $("#progress-title").textContent = creating ? "Creating the cluster failed" : action === "join_cluster" ? "Joining the cluster failed" : "The last bootstrap failed";
      const box = $("#progress-error");
      const details = status.error_details || {};
      box.replaceChildren(...failureNodes(status.error_code, details, "the bootstrap failed"));
      box.hidden = false;
      const again = $("#try-again");
      again.hidden = false;
      again.onclick = () => onTryAgain(status);
      again.focus();
    }
  };

  const poll = async () => {
    if (mine !== run) return;
    let status = null;
    try {
      const options = signedIn() ? {} : { anonymous: true };
      status = (await call("GET", "/v1/bootstrap", options)).bootstrap_status;
      $("#progress-cert").hidden = true;
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) {
        // The node is in its cluster now: its users exist.
        if (!creds) {
          onNeedSignIn("The node is in a cluster now: sign in to see it.");
          return;
        }
        try {
          await signIn(creds.username, creds.password);
          creds = null;
        } catch (signInError) {
          // 503: the node has not read its store yet; try again at the next poll.
          if (!(signInError instanceof ApiError) || signInError.status !== 503) {
            creds = null;
            onNeedSignIn(`The node is in the cluster, but signing in failed: ${signInError.message}`);
            return;
          }
        }
      } else if (!(error instanceof ApiError)) {
        showCertNotice(creating && location.protocol === "https:");
      }
    }
    if (mine !== run) return;
    if (status) {
      if (!seen.has(stepText(status))) addStep(status, seen);
      if (status.state === "completed" || status.state === "error") {
        creds = null;
        await finish(status);
        return;
      }
      stateLine.textContent = stepText(status);
    }
    setTimeout(poll, POLL_MS);
  };
  poll();
}

export function stopProgress() {
  run += 1;
}
