"""Replacing a failed node through the web console, end to end on real agents in a real browser:
a 2-node cluster whose second agent is killed with SIGKILL; a fresh agent's page asked to join
meets `repair_required`, offers the failed node (the server's `replace_candidate`) for
replacement, and the join with `node.identity.uid` makes the new machine node 2, `active`."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from harness.agents import Agent, AgentFactory
from harness.bodies import ADMIN, create_body, join_body
from harness.browser import Pages, screenshot
from harness.polling import eventually

pytest.importorskip("playwright", reason="the playwright package is not installed (dev extra)")
from playwright.sync_api import Page, expect

SLOW = 60_000  # ms: a join under load (real etcd on a shared 2-core machine)
DOWN_WITHIN = 40.0  # s: the liveness TTL is 10 s; generous on a loaded machine


def nodes_of(agent: Agent) -> dict[int, dict[str, Any]]:
    response = agent.get("/v1/nodes", auth=ADMIN)
    assert response.status_code == 200, response.text
    return {node["uid"]: node for node in response.json()}


def two_node_cluster(agents: AgentFactory) -> tuple[Agent, Agent]:
    # Made through the API: the pages that create and join are tested in test_console.py.
    first, second = agents.start(), agents.start()
    assert first.post("/v1/bootstrap/create_cluster", create_body("repair.example.com")).is_success
    assert first.wait_state("completed", "error", auth=ADMIN)["bootstrap_status"]["state"] == (
        "completed"
    )
    assert second.post("/v1/bootstrap/join_cluster", join_body([first.addr])).is_success
    joined = second.wait_state("completed", "error", auth=ADMIN, timeout=SLOW / 1000)
    assert joined["bootstrap_status"]["state"] == "completed", joined
    return first, second


def fill_join(page: Page, member: Agent) -> None:
    fingerprint = httpx.get(member.http_url + "/v1/join/ca").json()["ca_fingerprint"]
    page.get_by_label("Join a cluster").check()
    page.get_by_label("Address of a cluster node").fill(member.addr)
    page.get_by_label("Cluster admin email or name").fill(ADMIN[0])
    page.get_by_label("Cluster admin password").fill(ADMIN[1])
    page.get_by_label("Cluster CA fingerprint (SHA-256, optional)").fill(fingerprint)


def test_a_failed_node_is_replaced_through_the_page(agents: AgentFactory, pages: Pages) -> None:
    first, second = two_node_cluster(agents)
    second.kill9()
    fresh = agents.start()  # starts while the cluster notices node 2 is gone
    eventually(
        lambda: nodes_of(first)[2]["status"] == "down", timeout=DOWN_WITHIN, message="node 2 down"
    )

    page = pages.open(fresh.http_url + "/")
    fill_join(page, first)
    page.get_by_role("button", name="Check").click()
    # The check needs no cluster (validate), so only the join itself meets the failed node.
    expect(page.locator("#check-result")).to_contain_text("Check passed")
    page.get_by_role("button", name="Join cluster").click()
    error = page.locator("#progress-error")
    expect(error).to_contain_text("repair_required", timeout=SLOW)
    failed = error.locator("table tbody tr")
    expect(failed).to_have_count(1)
    assert failed.locator("td").all_inner_texts()[0] == "2"

    # Back at the form: the repair offer, with the server's candidate chosen.
    page.get_by_role("button", name="Try again").click()
    offer = page.locator("#repair")
    expect(offer).to_be_visible()
    expect(offer).to_contain_text("1 failed node(s)")
    expect(offer).to_contain_text("The cluster suggests node 2.")
    expect(page.get_by_label("Node to replace")).to_have_value("2")
    expect(page.locator("#replace-uid option")).to_have_text(["node 2 (suggested)"])
    expect(page.locator("#check-result")).to_contain_text("repair_required")
    expect(page.locator("#check-result table tbody tr")).to_have_count(1)
    screenshot(page, "wizard-repair-offer")

    page.get_by_label("Replace a failed node").check()
    page.get_by_role("button", name="Check").click()
    expect(page.locator("#check-result")).to_contain_text("Check passed")
    page.get_by_role("button", name="Join cluster").click()
    expect(page.locator("#progress-state")).to_contain_text("completed", timeout=SLOW)
    page.get_by_role("button", name="Open the cluster").click()
    rows = page.locator("#nodes tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator("#nodes tbody tr", has_text=fresh.addr)).to_contain_text("active")
    screenshot(page, "cluster-node-replaced")

    replaced = nodes_of(first)[2]
    assert replaced["addr"] == fresh.addr and replaced["status"] == "active", replaced
    assert sorted(nodes_of(first)) == [1, 2]
