"""Screenshots of every page of the web app at phone (390x844) and desktop (1440x900) size.

    .venv/bin/python -m tests.e2e.screenshots --base http://127.0.0.1:8000 --out /tmp/ctc-shots \
        [--channel ID] [--admin EMAIL:PASSWORD] [--only NAME,...]

Logs in as the demo provider and a demo subscriber (``infra.demo`` seeds them; ``--provider`` and
``--subscriber`` name others), sends a signal from the pad, and saves one full-page PNG per page
and size. With ``--admin`` (an admin made by ``python -m signal_hub.admin create-admin``), the
operators' console too. Nothing is faked: every page shows what the hub answers.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from playwright.sync_api import ConsoleMessage, Page, sync_playwright

from tests.e2e.browser import launch

SIZES = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1440, "height": 900}}
PROVIDER = "provider@demo.example.com:demo-provider-pass"
SUBSCRIBER = "paper0@demo.example.com:demo-subscriber-pass"
ADMIN_PAGES = [
    ("admin-pools", "/admin"),
    ("admin-failures", "/admin/failures"),
    ("admin-users", "/admin/users"),
    ("admin-channels", "/admin/channels"),
    ("admin-audit", "/admin/audit"),
]


def credentials(value: str) -> tuple[str, str]:
    email, _, password = value.partition(":")
    return email, password


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
    parser.add_argument("--provider", default=PROVIDER, help="EMAIL:PASSWORD")
    parser.add_argument("--subscriber", default=SUBSCRIBER, help="EMAIL:PASSWORD")
    parser.add_argument("--admin", default="", help="EMAIL:PASSWORD of an admin")
    parser.add_argument("--only", default="", help="comma-separated page names")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    only = set(filter(None, args.only.split(",")))
    errors: list[str] = []

    def want(*names: str) -> bool:
        return not only or any(name in only for name in names)

    with sync_playwright() as pw:
        browser = launch(pw)
        for size, viewport in SIZES.items():

            def new_page(size: str = size, viewport: dict[str, int] = viewport) -> Page:
                page = browser.new_context(viewport=viewport).new_page()
                page.on("console", lambda m: log_error(errors, size, m))
                return page

            page = new_page()
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
            page.context.close()

            if want("dashboard", "mychannels", "mychannel", "performance", "signal"):
                page = new_page()
                login(page, args.base, *credentials(args.provider))
                if want("dashboard"):
                    go(page, "/dashboard")
                    page.get_by_role("button", name="CALL").wait_for()
                    if args.channel:
                        page.get_by_label("Channel").select_option(value=args.channel)
                    time.sleep(1)  # the readiness note
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
                    go(page, "/dashboard")
                    link = page.locator("a[href^='/dashboard/signals/']").first
                    if link.count():
                        link.click()
                        page.wait_for_load_state("networkidle")
                        shot(page, out, "signal", size)
                page.context.close()

            if want("me"):
                page = new_page()
                login(page, args.base, *credentials(args.subscriber))
                go(page, "/me")
                shot(page, out, "me", size)
                page.context.close()

            if args.admin and want(*(name for name, _ in ADMIN_PAGES), "admin-suspend"):
                page = new_page()
                login(page, args.base, *credentials(args.admin))
                for name, path in ADMIN_PAGES:
                    if want(name):
                        go(page, path)
                        shot(page, out, name, size)
                if want("admin-suspend"):
                    go(page, "/admin/users")
                    page.get_by_role("button", name="Suspend ").first.click()
                    shot(page, out, "admin-suspend", size)
                page.context.close()
        browser.close()
    print("\n".join(errors) or "no console errors")


if __name__ == "__main__":
    main()
