"""The web console end to end on real agents, in a real browser: a cluster created through the
page (over HTTPS, across the certificate change), a second agent joined through its own page,
sign-in, the cluster view, users, a viewer's view, and the session's token kept out of every
browser storage. One cluster for the module: it costs seconds to make."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from cnm.web import ASSETS
from harness.agents import Agent, AgentFactory, module_agent_factory
from harness.browser import NARROW, Pages, fill_wizard, screenshot

pytest.importorskip("playwright", reason="the playwright package is not installed (dev extra)")
from playwright.sync_api import Page, Request, expect

NAME = "web.example.com"
ADMIN = ("admin@example.com", "a-long-secret")
VIEWER = ("viewer@example.com", "viewer-secret")
SLOW = 30_000  # ms: a bootstrap under load (real etcd on a shared 2-core machine)


@dataclass
class Made:
    first: Agent
    second: Agent
    page: Page  # the page that created the cluster, signed in as the admin
    factory: AgentFactory


def fill_node_paths_kept(page: Page) -> None:
    # The paths are prefilled from local_node_info: the agent's own, which exist.
    for label in ("Persistent storage path", "Ephemeral storage path"):
        assert page.get_by_label(label).input_value()


@pytest.fixture(scope="module")
def made(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    module_pages: Pages,
) -> Iterator[Made]:
    """Two agents; the first creates the cluster through its page over HTTPS."""
    with module_agent_factory(request, tmp_path_factory, "web-console") as factory:
        first, second = factory.start(), factory.start()
        page = module_pages.open(first.https_url + "/")
        expect(page.get_by_role("heading", name="Set up this node")).to_be_visible()
        screenshot(page, "wizard-create")
        fill_wizard(page, name=NAME, email=ADMIN[0], password=ADMIN[1])
        fill_node_paths_kept(page)
        page.get_by_role("button", name="Create cluster").click()
        expect(page.locator("#progress-state")).to_contain_text("completed", timeout=SLOW)
        screenshot(page, "progress-completed")
        yield Made(first, second, page, factory)


def test_create_through_the_page_reaches_completed_then_the_cluster(made: Made) -> None:
    page = made.page
    steps = page.locator("#progress-steps li .step").all_inner_texts()
    assert steps[-1] == "completed"
    assert any(step.startswith("creating_cluster") for step in steps), steps
    expect(page.get_by_role("heading", name="Cluster created")).to_be_visible()
    # The new cluster CA, offered for download, is the one the node now serves.
    ca = httpx.get(made.first.http_url + "/v1/join/ca").json()
    expect(page.locator("#ca-download")).to_be_visible()
    with page.expect_download() as download_info:
        page.locator("#ca-download").click()
    downloaded = download_info.value.path().read_text()
    assert downloaded == ca["ca_pem"]

    page.get_by_role("button", name="Open the cluster").click()
    expect(page.get_by_role("heading", name=f"Cluster {NAME}")).to_be_visible()
    # The admin's password typed in the wizard is no longer anywhere in the page.
    assert ADMIN[1] not in page.evaluate(
        "() => [...document.querySelectorAll('input')].map((i) => i.value).join(' ')"
    )
    rows = page.locator("#nodes tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(made.first.addr)
    expect(rows.first).to_contain_text("active")
    expect(rows.first).to_contain_text("voter")
    expect(page.locator("#license-facts")).to_contain_text("trial")
    expect(page.locator("#check-summary")).to_have_text("All nodes pass.")
    expect(page.locator("#ca-fp")).to_have_value(ca["ca_fingerprint"])
    command = page.locator("#join-command").inner_text()
    assert f"--nodes {made.first.addr}" in command
    assert f"--ca-fingerprint {ca['ca_fingerprint']}" in command
    assert f"-u {ADMIN[0]} --password-stdin --wait" in command
    assert ADMIN[1] not in command
    assert ca["ca_fingerprint"] in page.locator("#join-curl").inner_text()
    screenshot(page, "cluster-one-node")


def test_the_page_and_its_files_need_no_credentials_after_bootstrap(made: Made) -> None:
    for path in ["/", *(f"/web/{name}" for name in ASSETS)]:
        response = httpx.get(made.first.http_url + path)
        assert response.status_code == 200, path
        assert "script-src 'self'" in response.headers["content-security-policy"]
    assert httpx.get(made.first.http_url + "/v1/cluster").status_code == 401  # the data does


def test_every_api_call_after_sign_in_carries_the_token(made: Made) -> None:
    page = made.page
    seen: list[Request] = []

    def record(request: Request) -> None:
        seen.append(request)

    page.on("request", record)
    # The cluster view refreshes every few seconds: wait for its next round.
    with page.expect_request(re.compile(r"/v1/nodes$"), timeout=10_000):
        pass
    page.remove_listener("request", record)
    api_calls = [r for r in seen if "/v1/" in r.url]
    assert api_calls
    for call in api_calls:
        assert call.headers.get("authorization", "").startswith("JWT "), call.url
        assert "token" not in call.url.lower()


def test_the_token_is_in_no_browser_storage(made: Made) -> None:
    page = made.page
    expect(page.locator("#nav-user")).to_contain_text(ADMIN[0])  # signed in
    stored = page.evaluate(
        """() => ({
            local: Object.keys(localStorage).length,
            session: Object.keys(sessionStorage).length,
            cookie: document.cookie,
            url: location.href,
        })"""
    )
    assert stored == {"local": 0, "session": 0, "cookie": "", "url": made.first.https_url + "/"}
    assert page.context.cookies() == []


def fill_join(page: Page, member: Agent) -> None:
    fingerprint = httpx.get(member.http_url + "/v1/join/ca").json()["ca_fingerprint"]
    page.get_by_label("Join a cluster").check()
    expect(page.get_by_role("button", name="Join cluster")).to_be_visible()
    page.get_by_label("Address of a cluster node").fill(member.addr)
    page.get_by_label("Cluster admin email or name").fill(ADMIN[0])
    page.get_by_label("Cluster admin password").fill(ADMIN[1])
    page.get_by_label("Cluster CA fingerprint (SHA-256, optional)").fill(fingerprint)


def test_a_second_agent_joins_through_its_own_page(made: Made, module_pages: Pages) -> None:
    page = module_pages.open(made.second.http_url + "/")
    fill_join(page, made.first)
    page.get_by_role("button", name="Check").click()
    expect(page.locator("#check-result")).to_contain_text("Check passed")
    screenshot(page, "wizard-join")
    page.get_by_role("button", name="Join cluster").click()
    expect(page.locator("#progress-state")).to_contain_text("completed", timeout=SLOW)
    steps = page.locator("#progress-steps li .step").all_inner_texts()
    assert any(step.startswith("joining_cluster") for step in steps), steps
    page.get_by_role("button", name="Open the cluster").click()
    rows = page.locator("#nodes tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(1)).to_contain_text(made.second.addr)
    screenshot(page, "cluster-two-nodes")
    page.set_viewport_size(NARROW)
    screenshot(page, "cluster-two-nodes-narrow")
    # The creating page sees the new node too, at its next refresh.
    expect(made.page.locator("#nodes tbody tr")).to_have_count(2, timeout=10_000)


def cluster_status(agent: Agent, auth: tuple[str, str]) -> int:
    return httpx.get(agent.http_url + "/v1/cluster", auth=auth).status_code


def sign_in(page: Page, username: str, password: str) -> None:
    form = page.locator("#signin")
    form.get_by_label("Email or name", exact=True).fill(username)
    form.get_by_label("Password", exact=True).fill(password)
    form.get_by_role("button", name="Sign in").click()


def test_a_wrong_password_is_refused_at_sign_in(made: Made, module_pages: Pages) -> None:
    page = module_pages.open(made.first.http_url + "/", viewport=NARROW)
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    sign_in(page, ADMIN[0], "not-the-password")
    expect(page.locator("#signin-msg")).to_contain_text("Wrong email, name or password")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    screenshot(page, "sign-in-refused-narrow")
    sign_in(page, ADMIN[0], ADMIN[1])
    expect(page.get_by_role("heading", name=f"Cluster {NAME}")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator("#signin-msg")).to_have_text("Signed out.")


def test_an_admin_adds_changes_and_deletes_users(made: Made) -> None:
    page = made.page
    page.get_by_role("button", name="Users").click()
    expect(page.get_by_role("heading", name="Users")).to_be_visible()
    expect(page.locator("#users tbody tr")).to_have_count(1)
    for (email, password), role in (
        (VIEWER, "cluster_viewer"),
        (("gone@example.com", "gone-secret"), "db_viewer"),
    ):
        form = page.locator("#add-user")
        form.get_by_label("Email", exact=True).fill(email)
        form.get_by_label("Role").select_option(role)
        form.get_by_label("Password", exact=True).fill(password)
        form.get_by_role("button", name="Add user").click()
        expect(page.locator("#add-user-msg")).to_contain_text(f"Added {email}")
    rows = page.locator("#users tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(1)).to_contain_text("cluster_viewer")

    page.get_by_role("button", name="Change the password of gone@example.com").click()
    page.get_by_label("New password").fill("another-secret")
    page.get_by_role("button", name="Save password").click()
    expect(page.locator("#password-msg")).to_have_text("Password changed.")
    assert (
        httpx.get(
            made.first.http_url + "/v1/cluster", auth=("gone@example.com", "another-secret")
        ).status_code
        == 200
    )
    screenshot(page, "users")

    page.get_by_role("button", name="Delete gone@example.com").click()
    page.get_by_role("button", name="Confirm: delete gone@example.com").click()
    expect(rows).to_have_count(2)
    assert (
        httpx.get(
            made.first.http_url + "/v1/cluster", auth=("gone@example.com", "another-secret")
        ).status_code
        == 401
    )


def test_a_viewer_sees_the_cluster_but_no_add_user(made: Made, module_pages: Pages) -> None:
    page = module_pages.open(made.second.http_url + "/")
    sign_in(page, *VIEWER)
    expect(page.get_by_role("heading", name=f"Cluster {NAME}")).to_be_visible()
    expect(page.locator("#nodes tbody tr")).to_have_count(2)
    expect(page.locator("#nav-user")).to_contain_text("cluster_viewer")
    expect(page.get_by_role("button", name="Users")).to_be_hidden()
    expect(page.get_by_role("button", name="Add user")).to_be_hidden()
    expect(page.get_by_role("heading", name="Add user")).to_be_hidden()
    screenshot(page, "cluster-viewer")

    # The session ends when the user changes (here its password): back to sign-in, not a
    # broken page.
    token = httpx.post(made.first.http_url + "/v1/users/authorize", auth=ADMIN).json()[
        "access_token"
    ]
    uid = next(
        u["uid"]
        for u in httpx.get(made.first.http_url + "/v1/users", auth=ADMIN).json()
        if u["email"] == VIEWER[0]
    )
    changed = httpx.put(
        f"{made.first.http_url}/v1/users/{uid}",
        json={"password": "viewer-secret-2"},
        headers={"Authorization": f"JWT {token}"},
    )
    assert changed.status_code == 200, changed.text
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible(timeout=10_000)
    expect(page.locator("#signin-msg")).to_contain_text("Your session ended")


def test_a_refused_join_shows_the_mismatches_as_a_table(made: Made, module_pages: Pages) -> None:
    joiner = made.factory.start(extra_args=["--socket-dir", "/var/run/elsewhere"])
    page = module_pages.open(joiner.http_url + "/")
    fill_join(page, made.first)
    page.get_by_role("button", name="Join cluster").click()
    expect(page.get_by_role("heading", name="Joining the cluster failed")).to_be_visible(
        timeout=SLOW
    )
    error = page.locator("#progress-error")
    expect(error).to_contain_text("socket_directory_mismatch")
    row = error.locator("table tbody tr")
    expect(row).to_have_count(1)
    cells = row.locator("td").all_inner_texts()
    assert cells == ["socket_dir", "/var/opt/redislabs/run", "/var/run/elsewhere"]
    screenshot(page, "progress-join-mismatch")
    page.get_by_role("button", name="Try again").click()
    expect(page.get_by_label("Address of a cluster node")).to_have_value(made.first.addr)
    expect(page.locator("#check-result table tbody tr")).to_have_count(1)
    joiner.stop()


LIBFAKETIME = next(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"), None)


@pytest.mark.skipif(LIBFAKETIME is None, reason="libfaketime missing (Debian: faketime)")
def test_a_clock_off_shows_the_offset_and_its_bound(made: Made, module_pages: Pages) -> None:
    joiner = made.factory.start(env={"LD_PRELOAD": str(LIBFAKETIME), "FAKETIME": "+600s"})
    page = module_pages.open(joiner.http_url + "/")
    fill_join(page, made.first)
    page.get_by_role("button", name="Join cluster").click()
    error = page.locator("#progress-error")
    expect(error).to_contain_text("time_not_sync", timeout=SLOW)
    clock = error.locator(".clock")
    expect(clock).to_contain_text("the bound is 1000 ms")
    expect(clock).to_contain_text(f"measured against {made.first.addr}")
    measured = re.search(r"Clock offset: (-?[\d.]+) ms", clock.inner_text())
    assert measured is not None, clock.inner_text()
    assert 590_000 < float(measured.group(1)) < 610_000
    joiner.stop()


def test_a_down_node_is_highlighted(made: Made) -> None:
    page = made.page
    page.get_by_role("button", name="Cluster").click()
    made.second.stop()
    down = page.locator("#nodes tbody tr.down")
    expect(down).to_have_count(1, timeout=SLOW)
    expect(down).to_contain_text(made.second.addr)
    expect(page.locator("#check-summary")).to_have_text(
        "Some nodes fail the check.", timeout=10_000
    )
    screenshot(page, "cluster-node-down")
