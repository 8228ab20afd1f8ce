"""The demo: the whole system on embedded defaults, seeded, on this machine.

``python -m infra.demo`` ensures Redis, builds the web app if it is missing or stale, starts the
Procfile's processes through honcho, seeds a demo provider, channel and subscribers through the
public REST API, prints the URL to open, the logins and how to send a signal, and runs until
Ctrl-C, SIGTERM or SIGHUP (a closed terminal), each of which stops every process it started.
``python -m infra.demo signal`` sends one signal as the demo provider and prints the
acknowledgement (JSON) and the executions as they arrive.

The demo is development by definition (``APP_ENV=development``: published development secrets)
and listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import socketio

from broker_workers.deriv_sim.settings import get_settings as sim_settings
from core.connections import redact
from infra.local_redis import ensure_redis
from infra.publish.build import ensure_built
from infra.publish.errors import BuildError
from signal_hub.settings import get_settings

os.environ["APP_ENV"] = "development"  # before anything reads the settings

PROVIDER = {"email": "provider@demo.example.com", "password": "demo-provider-pass"}
SUBSCRIBER_PASSWORD = "demo-subscriber-pass"  # noqa: S105 - demo accounts
PAPER_SUBSCRIBERS = 20
DERIV_SUBSCRIBERS = 5
PROCESSES = ("web", "worker_paper", "worker_deriv", "reaper", "deriv_sim")
ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = ROOT / ".demo"  # gitignored
DEMO_STORE = DEMO_DIR / "store.jsonl"
SIM_ACCOUNTS = DEMO_DIR / "deriv_sim_accounts.json"
DERIV_BALANCE = 10_000


def deriv_token(i: int) -> str:
    return f"demo-deriv-token-{i:03d}"


def base_url() -> str:
    return f"http://127.0.0.1:{get_settings().port}"


def wait_ready(url: str, procs: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if procs.poll() is not None:
            sys.exit("the demo's processes stopped; see the output above")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    sys.exit("the hub did not become ready in time")


def signup(http: httpx.Client, email: str, password: str, role: str, name: str) -> dict[str, Any]:
    r = http.post(
        "/api/auth/signup",
        json={"email": email, "password": password, "role": role, "display_name": name},
    )
    if r.status_code == 409:
        r = http.post("/api/auth/login", json={"email": email, "password": password})
    r.raise_for_status()
    body: dict[str, Any] = r.json()
    return body


def deriv_sim_account(token: str, balance: float) -> bool:
    """Open an account on the loopback Deriv simulator; False when it is not running."""
    url = f"http://127.0.0.1:{sim_settings().port}/_sim/accounts"
    try:
        body = {"token": token, "balance": balance, "currency": "USD"}
        return httpx.post(url, json=body, timeout=2).status_code == 201
    except httpx.HTTPError:
        return False


def write_sim_accounts() -> None:
    """The demo's Deriv accounts, for the simulator to open at start (``DERIV_SIM_ACCOUNTS``):
    on a restart the workers warm their sessions with the seeded tokens at once, and the
    simulator must know them by then."""
    accounts = [
        {"token": deriv_token(i), "balance": DERIV_BALANCE, "currency": "USD"}
        for i in range(DERIV_SUBSCRIBERS)
    ]
    SIM_ACCOUNTS.parent.mkdir(parents=True, exist_ok=True)
    SIM_ACCOUNTS.write_text(json.dumps({"accounts": accounts}))


def add_account(
    http: httpx.Client, headers: dict[str, str], broker: str, credentials: dict[str, Any]
) -> dict[str, Any]:
    """A broker account, once the broker's worker pool is up to check it (it starts beside the
    hub, and a Deriv token is checked by a Deriv worker before it is saved)."""
    deadline = time.monotonic() + 60
    while True:
        r = http.post(
            "/api/broker-accounts",
            headers=headers,
            json={"broker": broker, "credentials": credentials},
        )
        if r.status_code not in (503, 504) or time.monotonic() > deadline:
            r.raise_for_status()
            account: dict[str, Any] = r.json()
            return account
        time.sleep(0.5)


def seed(url: str) -> dict[str, Any]:
    with httpx.Client(base_url=url, timeout=30) as http:
        provider = signup(http, PROVIDER["email"], PROVIDER["password"], "provider", "Demo Desk")
        auth = {"Authorization": f"Bearer {provider['access_token']}"}
        channels = http.get("/api/channels?mine=1", headers=auth).json()["items"]
        if channels:  # seeded by an earlier run, kept in DEMO_STORE (and SIM_ACCOUNTS)
            return {"channel": channels[0]}
        channel = http.post(
            "/api/channels",
            headers=auth,
            json={"name": "Demo FX momentum", "description": "Seeded by the demo."},
        ).json()
        brokers = http.get("/api/assets").json()
        plan = [("paper", i) for i in range(PAPER_SUBSCRIBERS)]
        if "deriv" in brokers:
            plan += [("deriv", i) for i in range(DERIV_SUBSCRIBERS)]
        for broker, i in plan:
            user = signup(
                http, f"{broker}{i}@demo.example.com", SUBSCRIBER_PASSWORD, "subscriber",
                f"{broker.title()} subscriber {i}",
            )  # fmt: skip
            headers = {"Authorization": f"Bearer {user['access_token']}"}
            credentials: dict[str, Any] = {}
            if broker == "deriv":
                credentials = {"token": deriv_token(i)}
                if not deriv_sim_account(credentials["token"], DERIV_BALANCE):
                    continue
            account = add_account(http, headers, broker, credentials)
            stake = (
                {"mode": "fixed", "amount": 5 + i} if i % 3 else {"mode": "percent", "percent": 1}
            )
            http.post(
                f"/api/channels/{channel['id']}/subscribe",
                headers=headers,
                json={"broker_account_id": account["id"], "stake": stake},
            ).raise_for_status()
        return {"channel": channel}


async def send_signal(url: str, asset: str, direction: str, expiry: int) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        login = await http.post("/api/auth/login", json=PROVIDER)
        login.raise_for_status()
        token = login.json()["access_token"]
        mine = await http.get("/api/channels?mine=1", headers={"Authorization": f"Bearer {token}"})
        channel = mine.json()["items"][0]
    sio = socketio.AsyncClient()
    done = asyncio.Event()
    seen: list[dict[str, Any]] = []
    total = 0

    async def on_execution(data: Any) -> None:
        for e in data if isinstance(data, list) else [data]:
            seen.append(e)
            print(f"  {e['broker']:6} {e['status']:8} {e.get('reason') or '':20} "
                  f"stake={e.get('stake')} latency={e['latency_ms']} ms")  # fmt: skip
        if total and len(seen) >= total:
            done.set()

    sio.on("execution", on_execution, namespace="/provider")
    await sio.connect(
        url, namespaces=["/provider"], auth={"token": token}, transports=["websocket"]
    )
    ack = await sio.call(
        "signal",
        {"channel_id": channel["id"], "asset": asset, "direction": direction,
         "expiry_seconds": expiry},
        namespace="/provider",
    )  # fmt: skip
    print("ack:", json.dumps(ack), flush=True)
    total = ack.get("fanout", {}).get("total", 0) if ack.get("ok") else 0
    if total and len(seen) < total:
        try:
            await asyncio.wait_for(done.wait(), timeout=15)
        except TimeoutError:
            print(f"only {len(seen)} of {total} executions arrived in 15 s")
    await sio.disconnect()


def _stop_on(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # the same clean stop as Ctrl-C


def run_demo() -> None:
    settings = get_settings()
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stop_on)
    if ensure_redis(settings.redis_url):
        print(f"Started a local Redis at {redact(settings.redis_url)}")
    try:
        print(f"Web app: {ensure_built(ROOT / 'frontend', ROOT / 'frontend' / 'dist')}")
    except BuildError as exc:
        print(f"The web app was not built ({exc}); the API and the signal command still work.")
    write_sim_accounts()
    # The Procfile names uvicorn, rq and python: the ones of this environment.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PATH": path, "APP_ENV": "development"}
    env["PORT"] = str(settings.port)  # honcho would give the first process type 5000
    env["DERIV_SIM_ACCOUNTS"] = str(SIM_ACCOUNTS)
    env.setdefault("SIGNUP_RATE_LIMIT_PER_MIN", "1000")  # the seed signs up every demo user
    env.setdefault("METRICS_HOST", "127.0.0.1")  # the workers' and reaper's /metrics: local only
    if not settings.mongodb_url:  # the embedded store, kept across demo runs
        env.setdefault("EMBEDDED_STORE_PATH", str(DEMO_STORE))
    procs = subprocess.Popen(
        [sys.executable, "-m", "honcho", "start", *PROCESSES], env=env, start_new_session=True
    )
    try:
        url = base_url()
        wait_ready(url, procs)
        seeded = seed(url)
        print(
            f"""
==================================================================================
 Cloud Trade Copier demo is running. Open {url}/ in a browser.
   provider login : {PROVIDER["email"]} / {PROVIDER["password"]}
   subscribers    : paper0..paper{PAPER_SUBSCRIBERS - 1}@demo.example.com,
                    deriv0..deriv{DERIV_SUBSCRIBERS - 1}@demo.example.com / {SUBSCRIBER_PASSWORD}
   channel        : {seeded["channel"]["name"]} ({url}/c/{seeded["channel"]["id"]})
 Send a signal from another terminal:
   .venv/bin/python -m infra.demo signal --asset EURUSD --direction CALL --expiry 60
 Ctrl-C stops everything.
==================================================================================
""",
            flush=True,
        )
        procs.wait()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut cleanup
        stop(procs)


def stop(procs: subprocess.Popen[bytes]) -> None:
    """SIGTERM the whole process group (honcho and every child), SIGKILL what outlives 20 s."""
    try:
        os.killpg(procs.pid, signal.SIGTERM)
        procs.wait(20)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(procs.pid, signal.SIGKILL)
    procs.wait(5)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m infra.demo")
    sub = parser.add_subparsers(dest="command")
    send = sub.add_parser("signal", help="send one signal as the demo provider")
    send.add_argument("--asset", default="EURUSD")
    send.add_argument("--direction", default="CALL", choices=["CALL", "PUT"])
    send.add_argument("--expiry", type=int, default=60)
    args = parser.parse_args()
    if args.command == "signal":
        asyncio.run(send_signal(base_url(), args.asset, args.direction, args.expiry))
    else:
        run_demo()


if __name__ == "__main__":
    main()
