"""The setup wizard of a fresh node, in a real browser: live checks as the user types, and the
node's own Check (validate/create_cluster) showing each problem at its field with its code."""

from __future__ import annotations

from playwright.sync_api import expect

from harness.agents import AgentFactory
from web.conftest import Pages, screenshot


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
    page.get_by_label("Admin email", exact=True).fill("admin@example.com")
    page.get_by_label("Admin password", exact=True).fill("a-long-secret")
    page.get_by_label("Admin password again", exact=True).fill("a-long-secret")
    page.get_by_role("button", name="Check").click()
    expect(message).to_contain_text("[config_error] cluster.name:")
    expect(message).to_contain_text("is not a valid FQDN")
    expect(page.locator("#check-result")).to_contain_text("config_error")
    expect(name).to_be_focused()
    screenshot(page, "wizard-bad-name")

    # Fixed, the same Check passes; nothing was started either way.
    name.fill("c1.example.com")
    page.get_by_role("button", name="Check").click()
    expect(page.locator("#check-result")).to_contain_text("Check passed")
    expect(message).to_have_text("")
    assert agent.status()["bootstrap_status"]["state"] == "idle"


def test_check_shows_the_nodes_own_error_codes_at_the_fields(
    agents: AgentFactory, pages: Pages
) -> None:
    agent = agents.start()
    page = pages.open(agent.http_url + "/")
    page.get_by_label("Cluster name (FQDN)").fill("c1.example.com")
    page.get_by_label("Admin email", exact=True).fill("admin@example.com")
    page.get_by_label("Admin password", exact=True).fill("short")
    page.get_by_label("Admin password again", exact=True).fill("short")
    page.get_by_label("Persistent storage path").fill("relative/path")
    page.get_by_role("button", name="Check").click()
    password_message = page.locator("#admin-password-msg")
    expect(password_message).to_contain_text("[config_error]")
    expect(password_message).to_contain_text("at least 8 characters")
    expect(page.locator("#check-result")).to_contain_text("config_error")
    screenshot(page, "wizard-check-errors")
    assert agent.status()["bootstrap_status"]["state"] == "idle"
