"""The setup wizard of a fresh node, in a real browser: live checks as the user types, and the
node's own Check (validate/create_cluster) showing each problem at its field with its code."""

from __future__ import annotations

import pytest

from harness.agents import AgentFactory
from harness.browser import NARROW, Pages, fill_wizard, screenshot

pytest.importorskip("playwright", reason="the playwright package is not installed (dev extra)")
from playwright.sync_api import expect


def test_a_bad_cluster_name_shows_its_error_at_the_field(
    agents: AgentFactory, pages: Pages
) -> None:
    agent = agents.start()
    page = pages.open(agent.http_url + "/")
    expect(page.get_by_role("heading", name="Set up this node")).to_be_visible()
    name = page.get_by_label("Cluster name (FQDN)")
    message = page.locator("#cluster-name-msg")

    # Checked as the user types, by the browser.
    name.fill("c1.example.com")
    expect(message).to_have_text("Valid name.")
    name.fill("bad_name.example.com")
    expect(message).to_contain_text("bad_name")
    expect(name).to_have_attribute("aria-invalid", "true")

    # Check: the node's own verdict, with its error code, at the same field.
    fill_wizard(page, email="admin@example.com", password="a-long-secret")
    page.get_by_role("button", name="Check").click()
    expect(message).to_contain_text("[config_error] cluster.name:")
    expect(message).to_contain_text("is not a valid FQDN")
    expect(page.locator("#check-result")).to_contain_text("config_error")
    expect(name).to_be_focused()
    screenshot(page, "wizard-bad-name")
    page.set_viewport_size(NARROW)
    screenshot(page, "wizard-bad-name-narrow")

    # Fixed, the same Check passes; nothing was started either way.
    name.fill("c1.example.com")
    page.get_by_role("button", name="Check").click()
    expect(page.locator("#check-result")).to_contain_text("Check passed")
    expect(message).to_have_text("")
    assert agent.status()["bootstrap_status"]["state"] == "idle"


def test_check_puts_each_of_several_problems_at_its_own_field(
    agents: AgentFactory, pages: Pages
) -> None:
    agent = agents.start()
    page = pages.open(agent.http_url + "/")
    fill_wizard(page, name="c1.example.com", email='bad"admin@example.com', password="short")
    page.get_by_label("Rack id").fill("-bad rack")
    page.get_by_role("button", name="Check").click()
    # One config_error from the node, its problems split to the fields they name.
    for field, words in (
        ("admin-email", "credentials.username: must not contain"),
        ("admin-password", "credentials.password: must be at least 8 characters"),
        ("rack-id", "node.identity.rack_id"),
    ):
        message = page.locator(f"#{field}-msg")
        expect(message).to_contain_text("[config_error]")
        expect(message).to_contain_text(words)
        expect(page.locator(f"#{field}")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#cluster-name-msg")).to_have_text("")
    expect(page.locator("#check-result")).to_contain_text("config_error")
    screenshot(page, "wizard-check-errors")
    assert agent.status()["bootstrap_status"]["state"] == "idle"


def test_a_failed_create_shows_its_error_and_try_again_keeps_the_form(
    agents: AgentFactory, pages: Pages
) -> None:
    agent = agents.start()
    page = pages.open(agent.http_url + "/")
    fill_wizard(page, name="retry.example.com", email="admin@example.com", password="a-long-secret")
    missing = str(agent.data_dir / "no-such-dir" / "persist")
    page.get_by_label("Persistent storage path").fill(missing)
    page.get_by_role("button", name="Create cluster").click()

    expect(page.get_by_role("heading", name="Creating the cluster failed")).to_be_visible()
    error = page.locator("#progress-error")
    expect(error).to_contain_text("path_error")
    expect(error).to_contain_text(missing)
    expect(page.locator("#progress-steps li.failed")).to_have_count(1)
    screenshot(page, "progress-error")

    page.get_by_role("button", name="Try again").click()
    expect(page.get_by_role("heading", name="Set up this node")).to_be_visible()
    expect(page.get_by_label("Cluster name (FQDN)")).to_have_value("retry.example.com")
    expect(page.get_by_label("Admin email", exact=True)).to_have_value("admin@example.com")
    expect(page.get_by_label("Persistent storage path")).to_have_value(missing)
    expect(page.locator("#persistent-path-msg")).to_contain_text("[path_error]")
    page.get_by_label("Persistent storage path").fill(str(agent.persistent_path))
    page.get_by_role("button", name="Create cluster").click()
    expect(page.locator("#progress-state")).to_have_text("completed", timeout=30_000)
    page.get_by_role("button", name="Open the cluster").click()
    expect(page.get_by_role("heading", name="Cluster retry.example.com")).to_be_visible()


def test_the_browser_enforces_the_pages_csp(agents: AgentFactory, pages: Pages) -> None:
    agent = agents.start()
    page = pages.open(agent.http_url + "/")
    expect(page.get_by_role("heading", name="Set up this node")).to_be_visible()
    response = page.reload()
    assert response is not None
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe" not in csp
    assert response.headers["x-frame-options"] == "DENY"
    console = pages.console_of(page)
    assert console.csp_violations() == []  # the page itself needs nothing the CSP forbids
    # Code injected into the page (as an XSS would) is refused, and the refusal is seen.
    page.evaluate(
        """() => {
            const s = document.createElement("script");
            s.textContent = "window.injected = true";
            document.body.append(s);
            const d = document.createElement("div");
            d.setAttribute("onclick", "window.injected = true");
            document.body.append(d);
            d.click();
        }"""
    )
    assert page.evaluate("window.injected === undefined")
    expect_violation = console.csp_violations()
    assert expect_violation, console.messages
    console.messages.clear()  # the test's own injection is not a fault of the page


def test_the_wizard_is_usable_with_the_keyboard_alone(agents: AgentFactory, pages: Pages) -> None:
    agent = agents.start()
    page = pages.open(agent.http_url + "/")
    expect(page.get_by_role("heading", name="Set up this node")).to_be_focused()
    page.keyboard.press("Tab")  # the choice of action
    expect(page.get_by_label("Create a cluster")).to_be_focused()
    page.keyboard.press("ArrowRight")  # radio buttons move with the arrows
    expect(page.get_by_label("Join a cluster")).to_be_checked()
    expect(page.get_by_role("button", name="Join cluster")).to_be_visible()
    page.keyboard.press("ArrowLeft")
    expect(page.get_by_role("button", name="Create cluster")).to_be_visible()
    page.keyboard.press("Tab")
    name = page.get_by_label("Cluster name (FQDN)")
    expect(name).to_be_focused()
    # The focused field is visibly marked.
    outline = name.evaluate(
        "e => getComputedStyle(e).outlineStyle + ' ' + getComputedStyle(e).outlineWidth"
    )
    assert outline.startswith("solid") and not outline.endswith(" 0px"), outline
    page.keyboard.type("keys.example.com")
    for _ in range(3):
        page.keyboard.press("Tab")
    expect(page.get_by_label("Admin password again", exact=True)).to_be_focused()
    page.get_by_role("button", name="Check").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#check-result")).to_be_visible()
    expect(page.locator("#cluster-name-msg")).to_have_text("")  # only the name was valid


def test_the_repair_offer_follows_the_documented_repair_required_shape(
    agents: AgentFactory, pages: Pages
) -> None:
    # The page's own handling of the documented answer (api-contract §5), with two failed nodes
    # and racks, driven through its module in the real page; against real agents, end to end:
    # test_repair_page.py.
    agent = agents.start()
    page = pages.open(agent.http_url + "/")
    page.get_by_label("Join a cluster").check()
    page.evaluate(
        """async () => {
            const wizard = await import("/web/wizard.js");
            wizard.showFailure("repair_required", {
                message: "the cluster has failed nodes: replace one (node.identity.uid)",
                failed_nodes: [{uid: 2, rack_id: "r1"}, {uid: 3}],
                replace_candidate: 3,
            });
        }"""
    )
    expect(page.get_by_role("group", name="The cluster has failed nodes")).to_be_visible()
    node = page.get_by_label("Node to replace")
    expect(node.locator("option")).to_have_text(["node 2 (rack r1)", "node 3 (suggested)"])
    expect(node).to_have_value("3")  # the cluster's candidate
    expect(page.locator("#check-result")).to_contain_text("repair_required")
    expect(page.locator("#check-result table tbody tr")).to_have_count(2)
    screenshot(page, "wizard-join-repair")

    body_of = 'async () => (await import("/web/wizard.js")).requestBody().body'
    body = page.evaluate(body_of)
    assert body["node"]["identity"]["uid"] == 3
    assert "override_repair" not in body
    node.select_option("2")
    assert page.evaluate(body_of)["node"]["identity"]["uid"] == 2
    page.get_by_label("Add this node anyway, as a new node").check()
    body = page.evaluate(body_of)
    assert body["override_repair"] is True
    assert "uid" not in body["node"]["identity"]
