"""The doors the web app opens, tried as an attacker would: secrets, sessions, feed access, limits,
logs, headers, and what people type. Real processes: the session's system, and a hub of this
module's own with strict limits, short tokens and a trusted proxy address.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as sync_redis
import socketio
import websockets
from cryptography.fernet import Fernet

from broker_workers.settings import load_settings as load_worker_settings
from core import keys
from core.settings import DEV_CREDENTIALS_KEY, DEV_JWT_SECRET, ConfigurationError
from signal_hub.settings import load_settings
from tests.client import Api, assert_error, live, new_email
from tests.conftest import LOG_DIR, UNIT_DB
from tests.procs import (
    ROOT,
    System,
    free_port,
    redis_server_argv,
    redis_url,
    running_system,
    wait_until,
)

STRICT_DB = UNIT_DB + 4
STRICT_ENV = {
    "ACCESS_TOKEN_TTL_S": "5",  # tests that use this hub sign up right before they act
    "FORWARDED_ALLOW_IPS": "127.0.0.1",  # as behind a proxy: X-Forwarded-For/-Proto trusted
    "LOGIN_RATE_LIMIT_PER_MIN": "1000",
    "LOGIN_IP_RATE_LIMIT_PER_MIN": "6",
    "LOGIN_ACCOUNT_RATE_LIMIT_PER_HOUR": "5",
    "MAX_BODY_BYTES": "65536",
    "CONTROL_RATE_LIMIT_PER_S": "3",
}
GOOD_SECRET = "a-long-random-secret-for-tests-0123456789abcdef"


@pytest.fixture(scope="module")
def strict() -> Iterator[System]:
    with running_system(STRICT_DB, LOG_DIR / "strict", **STRICT_ENV) as system:
        system.start_hub()
        yield system


@pytest.fixture
def strict_api(strict: System) -> Iterator[Api]:
    with httpx.Client(base_url=strict.base_url, timeout=10) as http:
        yield Api(http)


def signal_for(channel_id: str, **extra: Any) -> dict[str, Any]:
    return {"channel_id": channel_id, "asset": "EURUSD", "direction": "CALL",
            "expiry_seconds": 60, **extra}  # fmt: skip


# --- 2. secrets ------------------------------------------------------------------------------


@pytest.mark.parametrize("app_env", [None, "", "production", "Production", "prod", "staging"])
def test_only_explicit_development_runs_on_published_secrets(app_env: str | None) -> None:
    env = {} if app_env is None else {"APP_ENV": app_env}
    with pytest.raises(ConfigurationError) as refused:
        load_settings(env)
    for name in ("JWT_SECRET", "BROKER_CREDENTIALS_KEY", "MONGODB_URL"):
        assert name in str(refused.value)


@pytest.mark.parametrize(
    ("jwt_secret", "key", "problem"),
    [
        (DEV_JWT_SECRET, None, "JWT_SECRET is the published development default"),
        ("x", None, "JWT_SECRET is shorter than 32 bytes"),
        ("y" * 31, None, "JWT_SECRET is shorter than 32 bytes"),
        (GOOD_SECRET, DEV_CREDENTIALS_KEY.decode(), "contains the published development key"),
        (GOOD_SECRET, "not-a-fernet-key", "BROKER_CREDENTIALS_KEY must be Fernet keys"),
    ],
)
def test_weak_or_published_secrets_are_refused(
    jwt_secret: str, key: str | None, problem: str
) -> None:
    env = {
        "APP_ENV": "production",
        "MONGODB_URL": "mongodb://db.internal:27017",
        "JWT_SECRET": jwt_secret,
        "BROKER_CREDENTIALS_KEY": key or Fernet.generate_key().decode(),
    }
    with pytest.raises(ConfigurationError, match=problem) as refused:
        load_settings(env)
    assert jwt_secret not in str(refused.value) or jwt_secret == "x"  # never echoes a secret


def test_good_secrets_are_taken_and_development_says_what_it_is() -> None:
    key = Fernet.generate_key().decode()
    settings = load_settings(
        {
            "APP_ENV": "production",
            "MONGODB_URL": "mongodb://db.internal:27017",
            "JWT_SECRET": GOOD_SECRET,
            "BROKER_CREDENTIALS_KEY": f"{key},{Fernet.generate_key().decode()}",
        }
    )
    assert str(settings.jwt_secret) == GOOD_SECRET and not settings.development
    assert "secrets checked" in settings.describe() and GOOD_SECRET not in settings.describe()
    dev = load_settings({"APP_ENV": "development"})
    assert dev.development and str(dev.jwt_secret) == DEV_JWT_SECRET
    assert "development defaults" in dev.describe()


@pytest.mark.parametrize(
    ("argv", "refused"),
    [
        (["-m", "uvicorn", "signal_hub.app:app", "--port", "0"], "JWT_SECRET is not set"),
        (["-m", "broker_workers.reaper"], None),
    ],
)
def test_a_process_with_refused_secrets_stops_with_one_line(
    argv: list[str], refused: str | None
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("JWT_SECRET", "MONGODB_URL")}
    env.update(APP_ENV="Production", BROKER_CREDENTIALS_KEY=DEV_CREDENTIALS_KEY.decode())
    done = subprocess.run(
        [sys.executable, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert "configuration refused: " in done.stderr
    assert "contains the published development key" in done.stderr
    if refused is not None:
        assert refused in done.stderr
    else:  # a worker needs neither the store nor the token key
        assert "JWT_SECRET" not in done.stderr and "MONGODB_URL" not in done.stderr
    assert "Traceback" not in done.stderr and DEV_CREDENTIALS_KEY.decode() not in done.stderr


def test_a_worker_runs_without_the_hubs_secrets() -> None:
    """Workers and the reaper talk to neither the store nor the token signer: in production they
    need only the credentials key."""
    key = Fernet.generate_key().decode()
    settings = load_worker_settings({"APP_ENV": "production", "BROKER_CREDENTIALS_KEY": key})
    assert not settings.development and str(settings.broker_credentials_key) == key
    with pytest.raises(ConfigurationError, match="BROKER_CREDENTIALS_KEY is not set"):
        load_worker_settings({"APP_ENV": "production"})


# --- 3. passwords in logs --------------------------------------------------------------------


def test_a_redis_outage_during_login_logs_no_password(tmp_path: Path) -> None:
    """Cut the hub's Redis, then log in: the failure is logged (with its traceback), the
    password is not, whether it was in a local variable or in the message."""
    port = free_port()
    server = subprocess.Popen(redis_server_argv(port, tmp_path), stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    wait_until(lambda: sync_redis.Redis.from_url(url).ping(), what="the test's redis-server")
    password = f"pw-{uuid.uuid4().hex}"
    try:
        with running_system(0, tmp_path / "logs", REDIS_URL=url) as system:  # its own server
            hub = system.start_hub()
            with httpx.Client(base_url=system.base_url, timeout=30) as http:
                email = new_email("outage")
                body = {"email": email, "password": password, "role": "subscriber"}
                assert http.post("/api/auth/signup", json=body).status_code == 201
                server.send_signal(signal.SIGKILL)
                server.wait(5)
                r = http.post("/api/auth/login", json={"email": email, "password": password})
                assert_error(r, 500, "internal")
            time.sleep(0.5)
            log = hub.log.read_text(errors="replace")
    finally:
        if server.poll() is None:
            server.kill()
    assert "unhandled error on POST /api/auth/login" in log
    assert "Traceback" in log and "ConnectionError" in log  # the failure itself is there
    assert password not in log


# --- 4. a removed trader loses the feed, and cannot get it back ------------------------------


async def test_a_removed_trader_leaves_the_feed_and_a_resend_does_not_bring_it_back(
    system: System, api: Api
) -> None:
    provider = api.signup("provider")
    channel = api.channel(provider)
    for _ in range(2):
        api.subscriber(channel["id"])
    trader = api.signup("provider")
    api.add_trader(provider, channel["id"], trader)
    owner = await live(system.base_url, "/provider", provider)
    as_trader = await live(system.base_url, "/provider", trader)
    try:
        first = await as_trader.emit("signal", signal_for(channel["id"], client_signal_id="t-1"))
        assert first["ok"] and first["fanout"]["total"] == 2
        await as_trader.wait_for("the trader's feed", lambda: len(as_trader.executions) == 2)

        api.ok("DELETE", f"/api/channels/{channel['id']}/traders/{trader.id}", provider, 204)
        resend = await as_trader.emit("signal", signal_for(channel["id"], client_signal_id="t-1"))
        assert resend["ok"] is False and resend["error"]["code"] == "forbidden", resend
        assert "signal_id" not in json.dumps(resend)

        ack = await owner.emit("signal", signal_for(channel["id"]))
        assert ack["ok"] and ack["fanout"]["total"] == 2
        await owner.wait_for("the owner's feed", lambda: len(owner.executions) == 4)
        await asyncio.sleep(0.5)  # what the trader would get would be here by now
        assert {e["signal_id"] for e in as_trader.executions} == {first["signal_id"]}
        assert len(as_trader.executions) == 2
    finally:
        await owner.close()
        await as_trader.close()


# --- 5. sessions end when they should --------------------------------------------------------


def test_logout_revokes_the_session_everywhere_and_clears_the_cookie(api: Api) -> None:
    with httpx.Client(base_url=str(api.http.base_url), timeout=10) as browser:
        email = new_email("logout")
        r = browser.post(
            "/api/auth/signup", json={"email": email, "password": api.password, "role": "provider"}
        )
        assert r.status_code == 201, r.text
        cookie = r.headers["set-cookie"]
        for attribute in ("ctc_refresh=", "HttpOnly", "Path=/api/auth", "SameSite=strict"):
            assert attribute in cookie, cookie
        assert "Secure" not in cookie  # on 127.0.0.1 only
        access = r.json()["access_token"]
        other = api.http.post("/api/auth/login", json={"email": email, "password": api.password})
        other_session = other.json()

        refreshed = browser.post("/api/auth/refresh")  # the cookie, no body
        assert refreshed.status_code == 200, refreshed.text
        assert refreshed.json()["user"]["email"] == email
        access = refreshed.json()["access_token"]
        assert api.with_token("GET", "/api/me", access).status_code == 200

        out = browser.post("/api/auth/logout")
        assert out.status_code == 204 and out.content == b""
        assert (
            'ctc_refresh=""' in out.headers["set-cookie"]
            or "Max-Age=0" in out.headers["set-cookie"]
        )
        assert_error(api.with_token("GET", "/api/me", access), 401, "session_ended")
        assert_error(browser.post("/api/auth/refresh"), 401, "no_session")
        assert_error(
            api.http.post(
                "/api/auth/refresh", json={"refresh_token": refreshed.json()["refresh_token"]}
            ),
            401,
        )
        # The other session of the same user goes on.
        assert api.with_token("GET", "/api/me", other_session["access_token"]).status_code == 200
        assert browser.post("/api/auth/logout").status_code == 204  # again: still 204
    assert api.http.post("/api/auth/logout", json={"refresh_token": "garbage"}).status_code == 204


async def test_logout_disconnects_the_sockets_of_that_session(system: System, api: Api) -> None:
    provider = api.signup("provider")
    socket = await live(system.base_url, "/provider", provider)
    try:
        assert socket.sio.connected
        out = api.http.post("/api/auth/logout", json={"refresh_token": provider.refresh_token})
        assert out.status_code == 204
        await socket.wait_for("the server to disconnect", lambda: not socket.sio.connected, 5)
    finally:
        await socket.close()


async def test_a_socket_whose_session_ended_is_refused_then_disconnected(
    strict: System, strict_api: Api
) -> None:
    """The session ends on another hub (only its Redis mark here): the next signal is refused
    and the socket is dropped, so the client must come back with a fresh token."""
    provider = strict_api.signup("provider")
    channel = strict_api.channel(provider)
    socket = await live(strict.base_url, "/provider", provider)
    try:
        assert (await socket.emit("signal", signal_for(channel["id"])))["ok"]
        family = _claims(provider.access_token)["fam"]
        sync_redis.Redis.from_url(redis_url(STRICT_DB)).set(keys.revoked_family(family), 1, ex=60)
        refused = await socket.emit("signal", signal_for(channel["id"]))
        assert refused == {
            "ok": False,
            "error": {"code": "session_ended", "message": "This session has ended; log in again."},
        }
        await socket.wait_for("the server to disconnect", lambda: not socket.sio.connected, 5)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await live(strict.base_url, "/provider", provider)
    finally:
        await socket.close()


async def test_a_socket_is_disconnected_when_its_access_token_lapses(
    strict: System, strict_api: Api
) -> None:
    """A token that lapses while its socket is open: the hub drops the socket at that instant
    (the client reconnects with a fresh token), and a new connect with it is refused."""
    user = strict_api.signup("provider")
    lapses_at = _claims(user.access_token)["exp"]
    socket = await live(strict.base_url, "/provider", user)
    try:
        await socket.wait_for("the lapse", lambda: not socket.sio.connected, 8)
        assert abs(time.time() - lapses_at) < 1.5
        with pytest.raises(socketio.exceptions.ConnectionError):
            await live(strict.base_url, "/provider", user)
    finally:
        await socket.close()


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


# --- 6. limits -------------------------------------------------------------------------------


def test_bodies_over_the_cap_are_refused_before_they_are_read(strict_api: Api) -> None:
    huge = b'{"email": "a@b.co", "password": "' + b"x" * 70_000 + b'"}'
    r = strict_api.http.post(
        "/api/auth/login", content=huge, headers={"Content-Type": "application/json"}
    )
    assert_error(r, 413, "body_too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: refused while streaming
        yield b'{"email": "a@b.co", "password": "'
        for _ in range(20):
            yield b"y" * 8192
        yield b'"}'

    r = strict_api.http.post(
        "/api/auth/login", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert_error(r, 413, "body_too_large")
    # Under the cap, the same endpoint answers as usual.
    small = strict_api.http.post("/api/auth/login", json={"email": "a@b.co", "password": "x"})
    assert_error(small, 401, "invalid_credentials")


def test_a_login_spray_over_many_emails_is_limited_per_address(strict_api: Api) -> None:
    spray_from = {"X-Forwarded-For": f"203.0.113.{uuid.uuid4().int % 250}"}
    for _ in range(6):
        r = strict_api.http.post(
            "/api/auth/login",
            json={"email": new_email("spray"), "password": "guess"},
            headers=spray_from,
        )
        assert_error(r, 401, "invalid_credentials")
    r = strict_api.http.post(
        "/api/auth/login",
        json={"email": new_email("spray"), "password": "guess"},
        headers=spray_from,
    )
    assert_error(r, 429, "rate_limited")
    assert 1 <= int(r.headers["Retry-After"]) <= 60


def test_a_login_spray_from_many_addresses_is_limited_per_account(strict_api: Api) -> None:
    user = strict_api.signup("subscriber")
    for i in range(5):
        r = strict_api.http.post(
            "/api/auth/login",
            json={"email": user.email, "password": "wrong"},
            headers={"X-Forwarded-For": f"198.51.100.{i + 1}"},
        )
        assert_error(r, 401, "invalid_credentials")
    r = strict_api.http.post(
        "/api/auth/login",
        json={"email": user.email, "password": strict_api.password},
        headers={"X-Forwarded-For": "198.51.100.77"},
    )
    assert_error(r, 429, "rate_limited")
    assert 3000 < int(r.headers["Retry-After"]) <= 3600


def test_x_forwarded_for_is_not_trusted_without_forwarded_allow_ips(api: Api) -> None:
    """The session's hub trusts no proxy: a client rotating X-Forwarded-For is still one address
    (the per-address-and-email limit is 10 a minute there)."""
    user = api.signup("subscriber")
    answers = [
        api.http.post(
            "/api/auth/login",
            json={"email": user.email, "password": "wrong"},
            headers={"X-Forwarded-For": f"192.0.2.{i}"},
        ).status_code
        for i in range(11)
    ]
    assert answers[:10] == [401] * 10 and answers[10] == 429


async def test_join_and_cancel_are_rate_limited(strict: System, strict_api: Api) -> None:
    provider = strict_api.signup("provider")
    channel = strict_api.channel(provider)
    socket = await live(strict.base_url, "/provider", provider)
    try:
        joins = [await socket.emit("join", {"channel_id": channel["id"]}) for _ in range(6)]
        codes = [a.get("error", {}).get("code") for a in joins]
        assert codes[:3] == [None, None, None] and "rate_limited" in codes[3:], joins
        await asyncio.sleep(1.1)
        cancels = [await socket.emit("cancel", {"signal_id": "nope"}) for _ in range(6)]
        codes = [a["error"]["code"] for a in cancels]
        assert codes[:3] == ["signal_not_found"] * 3 and "rate_limited" in codes[3:], cancels
    finally:
        await socket.close()


# --- 7. noise as a weapon --------------------------------------------------------------------


async def test_malformed_socket_packets_log_one_short_line_each_at_most(strict: System) -> None:
    hub_log = next(p for p in strict.procs if p.name == "hub").log
    before = len(hub_log.read_text(errors="replace").splitlines())
    ws_url = strict.base_url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
    for payload in ('42["signal"', "4garbage", "4" + "[" * 500):
        async with websockets.connect(ws_url) as ws:
            await ws.recv()  # the engine.io open packet
            await ws.send("40")
            await ws.recv()
            for _ in range(20):
                await ws.send(payload)
            await asyncio.sleep(0.2)
    await asyncio.sleep(0.5)
    new = hub_log.read_text(errors="replace").splitlines()[before:]
    refused = [line for line in new if "refused a Socket.IO packet" in line]
    assert refused, new  # the refusals are seen...
    assert len(refused) <= 10, refused  # ...as a few lines, not 60 tracebacks
    assert not any("Traceback" in line or line.startswith("  File") for line in new), new


async def test_socket_io_refuses_other_origins(strict: System, strict_api: Api) -> None:
    user = strict_api.signup("provider")
    for origin, allowed in (
        ("https://evil.example", False),
        (strict.base_url, True),
        (None, True),  # not a browser
    ):
        client = socketio.AsyncClient(reconnection=False)
        headers = {"Origin": origin} if origin else {}
        try:
            await client.connect(
                strict.base_url, namespaces=["/provider"], auth={"token": user.access_token},
                transports=["websocket"], headers=headers, wait_timeout=5,
            )  # fmt: skip
            assert allowed, origin
        except socketio.exceptions.ConnectionError:
            assert not allowed, origin
        finally:
            await client.disconnect()


# --- 8. what people type ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["nul\x00byte", "bidi\u202etxt.exe", "isolate\u2066x", "<script>alert(1)</script>",
     "zero\u200bwidth", "tab\tname", "x" * 81, "   "],
)  # fmt: skip
def test_names_that_could_spoof_a_page_are_refused(api: Api, name: str) -> None:
    r = api.http.post(
        "/api/auth/signup",
        json={"email": new_email("name"), "password": api.password, "role": "provider",
              "display_name": name},
    )  # fmt: skip
    assert_error(r, 422, "validation_error")
    provider = api.signup("provider")
    assert_error(api.call("POST", "/api/channels", provider, json={"name": name}), 422)
    subscriber = api.signup("subscriber")
    body = {"broker": "paper", "credentials": {}, "label": name}
    assert_error(api.call("POST", "/api/broker-accounts", subscriber, json=body), 422)
    assert api.ok("GET", "/api/channels?mine=1", provider)["items"] == []


def test_plain_names_and_descriptions_pass(api: Api) -> None:
    provider = api.signup("provider", display_name="Zoë Ødegaard 東京")
    channel = api.channel(
        provider, name="EUR/USD — momentum & more", description="Line one.\nLine two, 5 < 6."
    )
    assert channel["name"] == "EUR/USD — momentum & more"
    r = api.call("POST", "/api/channels", provider, json={"name": "ok", "description": "x\u202ey"})
    assert_error(r, 422, "validation_error")


@pytest.mark.parametrize(
    "stake",
    [{"mode": "percent", "percent": 1e-320}, {"mode": "percent", "percent": 0.001},
     {"mode": "fixed", "amount": 0.001}, {"mode": "percent", "percent": 100.01}],
)  # fmt: skip
def test_stakes_too_small_to_mean_anything_are_refused(api: Api, stake: dict[str, Any]) -> None:
    provider = api.signup("provider")
    channel = api.channel(provider)
    subscriber = api.signup("subscriber")
    account = api.account(subscriber)
    body = {"broker_account_id": account["id"], "stake": stake}
    r = api.call("POST", f"/api/channels/{channel['id']}/subscribe", subscriber, json=body)
    assert_error(r, 422)
    assert api.ok("GET", "/api/subscriptions", subscriber)["items"] == []


# --- 9. headers ------------------------------------------------------------------------------


def test_every_answer_carries_the_security_headers(api: Api) -> None:
    for path in ("/", "/dashboard", "/api/channels", "/api/nope", "/healthz"):
        r = api.http.get(path)
        csp = r.headers.get("content-security-policy", "")
        assert "default-src 'self'" in csp and "script-src 'self'" in csp, (path, csp)
        assert "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
        assert "frame-ancestors 'none'" in csp
        host = api.http.base_url.netloc.decode()
        assert f"connect-src 'self' ws://{host} wss://{host}" in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "strict-origin-when-cross-origin"
        assert "strict-transport-security" not in r.headers  # plain HTTP here


def test_hsts_only_over_https_as_a_trusted_proxy_says(strict_api: Api) -> None:
    r = strict_api.http.get("/healthz", headers={"X-Forwarded-Proto": "https"})
    assert r.headers["strict-transport-security"].startswith("max-age=")
    assert "strict-transport-security" not in strict_api.http.get("/healthz").headers


def test_the_refresh_cookie_is_secure_off_localhost(strict_api: Api) -> None:
    email = new_email("secure")
    r = strict_api.http.post(
        "/api/auth/signup",
        json={"email": email, "password": strict_api.password, "role": "subscriber"},
        headers={"Host": "app.example.com", "X-Forwarded-Proto": "https"},
    )
    assert r.status_code == 201, r.text
    assert "Secure" in r.headers["set-cookie"] and "HttpOnly" in r.headers["set-cookie"]
