"""Screenshots of every page of the web app at phone (390x844) and desktop (1440x900) size.

    .venv/bin/python -m tests.e2e.screenshots --base http://127.0.0.1:8000 --out /tmp/ctc-shots \
        [--channel ID] [--fill-missing]

Logs in as the demo provider and a demo subscriber (``infra.demo`` seeds them), sends a signal
from the pad, and saves one full-page PNG per page and size. ``--fill-missing`` answers endpoints
that the hub does not have yet (a 404 "No such endpoint.") with sample data, so a page can be looked
at before its endpoint lands; nothing else is faked.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from playwright.sync_api import ConsoleMessage, Page, Route, sync_playwright

from tests.e2e.browser import launch

SIZES = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1440, "height": 900}}
PROVIDER = ("provider@demo.example.com", "demo-provider-pass")
SUBSCRIBER = ("paper0@demo.example.com", "demo-subscriber-pass")


def _iso(days: float = 0, hours: float = 0) -> str:
    t = datetime.now(UTC) - timedelta(days=days, hours=hours)
    return t.isoformat().replace("+00:00", "Z")


def sample(path: str, channel_id: str) -> Any:
    """Sample answers for endpoints of docs/api.md the hub lacks."""
    equity = []
    total = 0.0
    for i in range(60):
        total += 0.85 if (i * 7) % 10 < 6 else -1.0
        equity.append(
            {"t": _iso(days=30 - i / 2), "result": round(total, 2), "pnl": round(total * 5, 2)}
        )
    by_asset = [
        {
            "asset": "EURUSD",
            "signals": 31,
            "won": 19,
            "lost": 11,
            "refund": 1,
            "win_rate": 0.633,
            "pnl": 42.5,
            "result": 0.061,
        },
        {
            "asset": "GBPUSD",
            "signals": 18,
            "won": 9,
            "lost": 9,
            "refund": 0,
            "win_rate": 0.5,
            "pnl": -12.0,
            "result": -0.075,
        },
        {
            "asset": "R_100",
            "signals": 11,
            "won": 7,
            "lost": 4,
            "refund": 0,
            "win_rate": 0.636,
            "pnl": 18.25,
            "result": 0.177,
        },
    ]
    public = {
        "id": channel_id,
        "name": "Demo FX momentum",
        "description": "Momentum entries on the majors during the London and New York sessions.\n"
        "One to five minute expiries; no martingale.",
        "provider_name": "Demo Desk",
        "created_at": _iso(days=41),
        "assets": None,
        "brokers": ["paper", "deriv"],
        "copiers": 25,
        "settled_signals": 60,
        "win_rate": 0.5833,
        "result_per_unit": 0.071,
        "track_record_days": 30,
        "first_signal_at": _iso(days=30),
        "score": 0.457,
        "ranked": True,
    }
    if path == "/api/public/channels":
        others = [
            {
                **public,
                "id": "c2",
                "name": "Volatility 100 scalper",
                "provider_name": "R100 Lab",
                "copiers": 112,
                "settled_signals": 240,
                "win_rate": 0.5625,
                "result_per_unit": 0.04,
                "track_record_days": 130,
                "score": 0.499,
                "brokers": ["deriv"],
            },
            {
                **public,
                "id": "c3",
                "name": "Asia range fades",
                "provider_name": "Tokyo Open",
                "copiers": 7,
                "settled_signals": 34,
                "win_rate": 0.5294,
                "result_per_unit": -0.021,
                "track_record_days": 12,
                "score": 0.366,
                "brokers": ["paper"],
            },
            {
                **public,
                "id": "c4",
                "name": "News spikes",
                "provider_name": "Macro Mike",
                "copiers": 3,
                "settled_signals": 6,
                "win_rate": 0.8333,
                "result_per_unit": 0.54,
                "track_record_days": 2,
                "score": 0.436,
                "ranked": False,
            },
        ]
        return {"items": [others[0], public, others[1], others[2]], "min_settled_signals": 20}
    if path.startswith("/api/public/channels/") and path.endswith("/signals"):
        items = []
        for i in range(12):
            won = (i * 7) % 10 < 6
            items.append(
                {
                    "id": f"s{i}",
                    "asset": ["EURUSD", "GBPUSD", "R_100"][i % 3],
                    "direction": "CALL" if i % 2 else "PUT",
                    "expiry_seconds": 60 * (1 + i % 3),
                    "created_at": _iso(hours=2 + i * 3),
                    "expires_at": _iso(hours=2 + i * 3),
                    "outcome": "won" if won else "lost",
                    "result": 0.85 if won else -1.0,
                }
            )
        return {"items": items}
    if path.startswith("/api/public/channels/"):
        return {
            **public,
            "equity": equity,
            "by_asset": by_asset,
            "latency_ms": {"p50": 142.0, "p99": 611.0},
        }
    if path.endswith("/performance") and path.startswith("/api/channels/"):
        return {
            "signals": 64,
            "settled_signals": 60,
            "win_rate": 0.5833,
            "pnl": 48.75,
            "staked": 1500.0,
            "roi": 0.0325,
            "subscribers": 25,
            "latency_ms": {"p50": 142.0, "p99": 611.0, "samples": 1480},
            "equity": [{"t": p["t"], "pnl": p["pnl"]} for p in equity],
            "by_asset": by_asset,
        }
    if path.endswith("/subscribers"):
        items = [
            {
                "subscription_id": f"sub{i}",
                "subscriber": f"Paper subscriber {i}",
                "broker": "paper" if i < 20 else "deriv",
                "stake": {"mode": "fixed", "amount": 5 + i}
                if i % 3
                else {"mode": "percent", "percent": 1},
                "limits": {"daily_loss_limit": 50} if i % 4 == 0 else {},
                "paused": i % 9 == 4,
                "since": _iso(days=20 - i / 2),
            }
            for i in range(25)
        ]
        return {"counts": {"active": 22, "paused": 3, "total": 25}, "items": items}
    if path == "/api/me/performance":
        return {
            "trades": 14,
            "placed": 12,
            "settled": 11,
            "won": 7,
            "lost": 4,
            "refund": 0,
            "pnl": 9.65,
            "staked": 66.0,
            "equity": [{"t": p["t"], "pnl": p["pnl"] / 5} for p in equity[:11]],
        }
    if path == "/api/brokers":
        caps = {
            "min_stake": 0.35,
            "max_stake": 50000,
            "min_expiry_s": 15,
            "max_expiry_s": 86400,
            "currency": "USD",
        }
        return {
            "items": [
                {"name": "paper", **caps, "credential_fields": [], "assets": []},
                {"name": "deriv", **caps, "credential_fields": ["token"], "assets": []},
            ]
        }
    return None


def fill_missing(page: Page, channel_id: str) -> None:
    def handle(route: Route) -> None:
        with contextlib.suppress(Exception):  # the page or its context closed meanwhile
            fill(route)

    def fill(route: Route) -> None:
        response = route.fetch()
        url = route.request.url
        path = "/" + url.split("/", 3)[3].split("?")[0]
        if response.status == 404 and "No such endpoint" in response.text():
            body = sample(path, channel_id)
            if body is not None:
                route.fulfill(status=200, content_type="application/json", body=json.dumps(body))
                return
        route.fulfill(response=response)

    page.route("**/api/**", handle)


def log_error(errors: list[str], size: str, message: ConsoleMessage) -> None:
    if message.type == "error":
        errors.append(f"{size}: {message.text}")


def go(page: Page, path: str) -> None:
    """In-app navigation (keeps the in-memory session even without the refresh cookie)."""
    page.evaluate(
        "p => document.getElementById('app').__vue_app__.config.globalProperties.$router.push(p)",
        path,
    )
    page.wait_for_load_state("networkidle")
    time.sleep(0.4)


def login(page: Page, base: str, email: str, password: str) -> None:
    page.goto(f"{base}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/login" not in url)
    page.wait_for_load_state("networkidle")


def shot(page: Page, out: Path, name: str, size: str) -> None:
    time.sleep(0.3)
    page.screenshot(path=str(out / f"{name}-{size}.png"), full_page=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", default="http://127.0.0.1:8000")
    parser.add_argument("--out", default="/tmp/ctc-shots")
    parser.add_argument("--channel", default="")
    parser.add_argument("--fill-missing", action="store_true")
    parser.add_argument("--only", default="", help="comma-separated page names")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    only = set(filter(None, args.only.split(",")))
    errors: list[str] = []

    with sync_playwright() as pw:
        browser = launch(pw)
        for size, viewport in SIZES.items():
            context = browser.new_context(viewport=viewport)
            page = context.new_page()
            page.on("console", lambda m, size=size: log_error(errors, size, m))
            if args.fill_missing:
                fill_missing(page, args.channel or "demo")

            def want(name: str) -> bool:
                return not only or name in only

            for name, path in [
                ("home", "/"),
                ("login", "/login"),
                ("signup", "/signup"),
                ("channels", "/channels"),
                ("notfound", "/nowhere"),
            ]:
                if want(name):
                    page.goto(f"{args.base}{path}")
                    page.wait_for_load_state("networkidle")
                    shot(page, out, name, size)
            if args.channel and want("channel"):
                page.goto(f"{args.base}/c/{args.channel}")
                page.wait_for_load_state("networkidle")
                shot(page, out, "channel", size)
                page.get_by_role("button", name="Copy this provider").click()
                shot(page, out, "channel-copy", size)

            login(page, args.base, *PROVIDER)
            if want("dashboard"):
                go(page, "/dashboard")
                page.get_by_role("button", name="CALL").wait_for()
                shot(page, out, "dashboard-empty", size)
                page.get_by_role("button", name="CALL").click()
                page.get_by_text("placed", exact=False).first.wait_for()
                time.sleep(2.5)
                shot(page, out, "dashboard", size)
            if want("mychannels"):
                go(page, "/dashboard/channels")
                shot(page, out, "mychannels", size)
            if args.channel and want("mychannel"):
                go(page, f"/dashboard/channels/{args.channel}")
                shot(page, out, "mychannel", size)
            if want("performance"):
                go(page, "/dashboard/performance")
                shot(page, out, "performance", size)
            if want("signal"):
                link = page.locator("a[href^='/dashboard/signals/']").first
                go(page, "/dashboard")
                if link.count():
                    link.click()
                    page.wait_for_load_state("networkidle")
                    shot(page, out, "signal", size)
            page.get_by_role("button", name="Log out").click() if size == "desktop" else None
            context.close()

            context = browser.new_context(viewport=viewport)
            page = context.new_page()
            page.on("console", lambda m, size=size: log_error(errors, size, m))
            if args.fill_missing:
                fill_missing(page, args.channel or "demo")
            if want("me"):
                login(page, args.base, *SUBSCRIBER)
                go(page, "/me")
                shot(page, out, "me", size)
            context.close()
        browser.close()
    print("\n".join(errors) or "no console errors")


if __name__ == "__main__":
    main()
