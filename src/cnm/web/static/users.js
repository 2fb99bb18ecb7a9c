// The users page, for admins and user managers: list, add (with a role), delete (asked twice),
// change a password. Every change is a REST call; the list is read again after it.

import { call } from "./api.js";
import { $, el } from "./util.js";

let passwordUid = null;

function errorText(error) {
  return error.code ? `[${error.code}] ${error.message}` : error.message;
}

function deleteButton(user) {
  const button = el("button", { type: "button", class: "danger small", text: "Delete", "aria-label": `Delete ${user.email}` });
  let armed = false;
  button.addEventListener("click", async () => {
    if (!armed) {
      armed = true;
      button.textContent = "Confirm delete";
      button.setAttribute("aria-label", `Confirm: delete ${user.email}`);
      return;
    }
    button.disabled = true;
    try {
      await call("DELETE", `/v1/users/${user.uid}`);
      $("#users-msg").textContent = "";
      await loadUsers();
    } catch (error) {
      $("#users-msg").textContent = errorText(error);
      button.disabled = false;
    }
  });
  button.addEventListener("blur", () => {
    armed = false;
    button.textContent = "Delete";
    button.setAttribute("aria-label", `Delete ${user.email}`);
  });
  return button;
}

function passwordButton(user) {
  return el("button", {
    type: "button",
    class: "secondary small",
    text: "Change password",
    "aria-label": `Change the password of ${user.email}`,
    on: {
      click: () => {
        passwordUid = user.uid;
        $("#password-title").textContent = `Change the password of ${user.email}`;
        $("#password-user").value = user.email;
        $("#password-msg").textContent = "";
        $("#password-form").hidden = false;
        $("#new-password").focus();
      },
    },
  });
}

export async function loadUsers() {
  try {
    const users = await call("GET", "/v1/users");
    $("#users tbody").replaceChildren(
      ...users.map((user) =>
        el(
          "tr",
          {},
          el("td", { "data-label": "uid", text: user.uid }),
          el("td", { "data-label": "email", text: user.email }),
          el("td", { "data-label": "name", text: user.name || "" }),
          el("td", { "data-label": "role", text: user.role }),
          el("td", { "data-label": "status", text: user.status }),
          el("td", { "data-label": "actions" }, el("div", { class: "actions" }, passwordButton(user), deleteButton(user))),
        ),
      ),
    );
  } catch (error) {
    $("#users-msg").textContent = errorText(error);
  }
}

export function initUsers() {
  $("#add-user").addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {
      email: $("#new-email").value.trim(),
      role: $("#new-role").value,
      password: $("#new-user-password").value,
    };
    const name = $("#new-name").value.trim();
    if (name) body.name = name;
    const msg = $("#add-user-msg");
    try {
      const user = await call("POST", "/v1/users", { body });
      msg.textContent = `Added ${user.email} (uid ${user.uid}).`;
      msg.className = "msg ok";
      for (const id of ["#new-email", "#new-name", "#new-user-password"]) $(id).value = "";
      await loadUsers();
    } catch (error) {
      msg.textContent = errorText(error);
      msg.className = "msg";
    }
  });
  $("#password-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const msg = $("#password-msg");
    try {
      await call("PUT", `/v1/users/${passwordUid}`, { body: { password: $("#new-password").value } });
      $("#new-password").value = "";
      msg.textContent = "Password changed.";
      msg.className = "msg ok";
    } catch (error) {
      msg.textContent = errorText(error);
      msg.className = "msg";
    }
  });
  $("#password-cancel").addEventListener("click", () => {
    $("#new-password").value = "";
    $("#password-form").hidden = true;
  });
}
