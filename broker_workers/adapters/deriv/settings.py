"""The Deriv adapter's settings: where Deriv is, how many sessions, and its tunables by name."""

from __future__ import annotations

from dataclasses import dataclass

from core.settings import Env


@dataclass(frozen=True)
class DerivSettings:
    ws_url: str  # DERIV_WS_URL: the WebSocket API v3 (the loopback simulator by default)
    app_id: str  # DERIV_APP_ID
    connections: int  # DERIV_CONNECTIONS: persistent sessions per worker, each its rate budget
    reply_timeout_s: float = 5.0  # a request unanswered this long is unanswered
    connect_timeout_s: float = 5.0
    lookup_timeout_s: float = 10.0  # reads: statement, contract, balance
    ping_interval_s: float = 30.0  # keep-alive of an idle session
    backoff_base_s: float = 0.25  # reconnects and retries: base * 2**attempt, jittered ...
    backoff_max_s: float = 15.0  # ... up to this
    reconcile_delay_s: float = 0.25  # lets a purchase still in flight land before we look
    side_connections: int = 8  # short-lived connections for accounts no session is logged in as
    answers_kept: int = 100_000  # the broker's answers remembered for find_purchase
    # A purchase found by its details: not older than its deadline minus the lookback (when the
    # signal's creation is unknown), not later than its deadline plus the grace (in flight, skew).
    reconcile_lookback_s: int = 300
    reconcile_grace_s: int = 5
    # Deriv's documented limits per connection for buy's group (with proposal,
    # proposal_open_contract and sell), per minute and per hour; we keep to a share of them.
    buy_limits_documented: tuple[int, int] = (360, 14_400)
    rate_share_pct: int = 90

    @classmethod
    def read(cls, env: Env) -> DerivSettings:
        sim_port = env("DERIV_SIM_PORT", cast=int, default=8765)
        return cls(
            # Unset: the local simulator (DERIV_SIM_PORT), as in the demo.
            ws_url=env.optional("DERIV_WS_URL") or f"ws://127.0.0.1:{sim_port}/websockets/v3",
            app_id=env("DERIV_APP_ID", default="1089"),
            connections=max(1, env("DERIV_CONNECTIONS", cast=int, default=2)),
        )
