// The console's entry point: asks the node where it stands (GET /v1/bootstrap without
// credentials) and shows the wizard, the progress, or sign-in; then moves between the views.
// Only one view is visible at a time; focus moves to its heading so keyboard and screen-reader
// users land in the new content.

import { ApiError, call, currentUserUid, onSessionEnd, signIn, signOut, signedIn } from "./api.js";
import { initCluster, startCluster, stopCluster } from "./cluster.js";
import { startProgress, stopProgress } from "./progress.js";
import { $ } from "./util.js";
import { loadUsers, initUsers } from "./users.js";
import { clearMessages, initWizard, showFailure } from "./wizard.js";

const VIEWS = ["loading", "wizard", "progress", "signin", "cluster", "users"];
const USER_ADMINS = new Set(["admin", "user_manager"]);
let me = null;
let wizardReady = false;

function showView(name) {
  for (const view of VIEWS) document.getElementById(`view-${view}`).hidden = view !== name;
  $("#nav").hidden = !(signedIn() && (name === "cluster" || name === "users"));
  for (const [button, view] of [["#nav-cluster", "cluster"], ["#nav-users", "users"]]) {
    if (view === name) $(button).setAttribute("aria-current", "page");
    else $(button).removeAttribute("aria-current");
  }
  if (name !== "cluster") stopCluster();
  if (name !== "progress") stopProgress();
  const heading = document.querySelector(`#view-${name} h1`);
  if (heading) heading.focus();
}

function notice(text) {
  const box = $("#notice");
  box.textContent = text || "";
  box.hidden = !text;
}

async function whoAmI() {
  const uid = currentUserUid();
  me = uid === null ? null : await call("GET", `/v1/users/${uid}`);
  $("#nav-user").textContent = me ? `${me.email} (${me.role})` : "";
  $("#nav-users").hidden = !(me && USER_ADMINS.has(me.role));
}

async function openCluster() {
  notice("");
  await whoAmI();
  showView("cluster");
  await startCluster(me);
}

function showSignIn(message) {
  $("#signin-msg").textContent = message || "";
  showView("signin");
  $("#signin-user").focus();
}

function showWizard(info) {
  if (!wizardReady) {
    initWizard(info, (started) => {
      showView("progress");
      startProgress(started, progressHandlers());
    });
    wizardReady = true;
  }
  showView("wizard");
}

function progressHandlers() {
  return {
    onCompleted: () => {
      // The passwords typed in the wizard are not needed any more: no copy stays in the page.
      for (const id of ["#admin-password", "#admin-password2", "#join-password"]) $(id).value = "";
      return openCluster().catch((error) => showSignIn(error.message));
    },
    // The wizard's form was only hidden: what was typed is still there.
    // The failure is shown again at the fields it names.
    onTryAgain: (failed) => {
      if (!wizardReady) return start();
      showView("wizard");
      clearMessages();
      if (failed && failed.error_code) showFailure(failed.error_code, failed.error_details || {});
      return undefined;
    },
    onNeedSignIn: (message) => showSignIn(message),
  };
}

async function start() {
  try {
    const doc = await call("GET", "/v1/bootstrap", { anonymous: true });
    const status = doc.bootstrap_status;
    if (status.state === "idle" || status.state === "error") {
      showWizard(doc.local_node_info);
      if (status.state === "error") {
        // A failed attempt from before this page was opened: show it, then the form.
        showView("progress");
        startProgress({ action: status.action }, progressHandlers());
      }
    } else if (status.state === "completed") {
      showSignIn();
    } else {
      showView("progress");
      startProgress({ action: status.state === "creating_cluster" ? "create_cluster" : status.state === "joining_cluster" ? "join_cluster" : null }, progressHandlers());
    }
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) showSignIn();
    else if (error instanceof ApiError) {
      notice(`The node answered ${error.status}: ${error.message}`);
      showSignIn();
    } else {
      notice(`The node cannot be reached: ${error.message}. Reload to try again.`);
    }
  }
}

function init() {
  initCluster();
  initUsers();
  onSessionEnd((reason) => {
    me = null;
    stopCluster();
    showSignIn(reason === "expired" ? "Your session ended (it expired, or your user changed): sign in again." : "Signed out.");
  });
  $("#signin").addEventListener("submit", async (event) => {
    event.preventDefault();
    const user = $("#signin-user").value.trim();
    const password = $("#signin-password");
    const button = $("#signin-submit");
    button.disabled = true;
    $("#signin-msg").textContent = "";
    try {
      await signIn(user, password.value);
      password.value = "";
      await openCluster();
    } catch (error) {
      const code = error.code ? `[${error.code}] ` : "";
      $("#signin-msg").textContent = error instanceof ApiError && error.status === 401
        ? `${code}Wrong email, name or password.`
        : `${code}${error.message}`;
      password.focus();
    } finally {
      button.disabled = false;
    }
  });
  $("#sign-out").addEventListener("click", () => signOut());
  $("#nav-cluster").addEventListener("click", () => openCluster());
  $("#nav-users").addEventListener("click", async () => {
    showView("users");
    await loadUsers();
  });
  start();
}

init();
