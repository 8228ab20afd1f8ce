"""Accessibility: axe-core on the pages people use most; no serious or critical violation."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect

from tests.client import Api
from tests.e2e.conftest import DESKTOP, PHONE, Browsing
from tests.e2e.helpers import login, paper_subscribers, provider_with_channel

pytestmark = pytest.mark.browser
AXE = Axe()


def serious(page: Page) -> list[dict[str, Any]]:
    results = AXE.run(page)
    found = [v for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    return [
        {"id": v["id"], "impact": v["impact"], "help": v["help"],
         "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in found
    ]  # fmt: skip


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_no_serious_violations(browsing: Browsing, rest: Api, viewport: dict[str, int]) -> None:
    provider, channel = provider_with_channel(rest, "Axe channel", description="Checked by axe.")
    (subscriber,) = paper_subscribers(rest, channel["id"], 1)
    report: dict[str, list[dict[str, Any]]] = {}

    page, _ = browsing.page(viewport)
    page.goto("/login")
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    report["/login"] = serious(page)
    page.goto("/channels")
    page.wait_for_load_state("networkidle")
    report["/channels"] = serious(page)
    page.goto(f"/c/{channel['id']}")
    page.wait_for_load_state("networkidle")
    report["/c/<id>"] = serious(page)

    login(page, provider.email)
    expect(page).to_have_url(re.compile(r"/dashboard$"))
    expect(page.get_by_role("button", name="CALL", exact=True)).to_be_enabled()
    page.get_by_role("button", name="CALL", exact=True).click()
    expect(page.get_by_text("1 placed", exact=True)).to_be_visible()
    report["/dashboard"] = serious(page)

    page2, _ = browsing.page(viewport)
    login(page2, subscriber.email)
    expect(page2).to_have_url(re.compile(r"/me"))
    expect(page2.get_by_role("heading", name="Subscriptions")).to_be_visible()
    report["/me"] = serious(page2)

    print(json.dumps(report, indent=1))
    assert not any(report.values()), report
