"""The baseline: the design a user would write with RQ alone, against the same brokers.

One RQ job per subscriber, enqueued with ``Queue.enqueue_many`` on a queue of its own per broker
(``bench.baseline.<broker>``), run by plain ``rq worker`` processes (RQ's default ``Worker``,
which forks a work horse per job), as many per broker as our pool has. Each job does what the
obvious code does: read the subscription and its account from the directory, open the sealed
credentials, and buy synchronously on the subscriber's broker:

- paper: the broker's simulated latency (``PAPER_LATENCY_MS``), then the paper ledger's own buy
  script through a sync Redis client, as the paper adapter does for one order;
- deriv: a sync WebSocket (``websockets.sync.client``) to the simulator, ``authorize`` with the
  subscriber's token, ``buy`` with parameters, close. The simulator's latency applies to each
  message, as the real broker's round trips would, so a job costs two of them: a forked job has
  no session to keep warm.
"""

from __future__ import annotations

import json
import sys
import time
from decimal import Decimal
from typing import Any

import redis
from rq import Queue
from websockets.sync.client import connect

from broker_workers.adapters.deriv.client import with_app_id
from broker_workers.adapters.paper.ledger import BALANCES, BUY, CONTRACTS, ORDERS, SEQUENCE, cents
from broker_workers.settings import get_settings
from core import keys
from core.brokers import CATALOGUE
from core.crypto import CredentialsBox

JOB_TIMEOUT_S = 60


def queue_name(broker: str) -> str:
    return f"bench.baseline.{broker}"


def buy(order: dict[str, Any], subscription_id: str) -> str:
    """RQ job: one subscriber's purchase, synchronously. Returns the broker's answer."""
    settings = get_settings()
    r = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        sub = json.loads(r.hget(keys.subscriptions(order["channel_id"]), subscription_id) or "null")
        account = json.loads(r.hget(keys.accounts(sub["broker"]), sub["account_id"]) or "null")
        credentials = CredentialsBox(settings.broker_credentials_key).open(account["credentials"])
        stake = Decimal(str(sub["stake"]["amount"]))
        client_order_id = f"{order['tag']}-{subscription_id}"
        if sub["broker"] == "paper":
            time.sleep(settings.paper.latency_ms / 1000)
            start = credentials.get("starting_balance", settings.paper.start_balance)
            reply = r.eval(
                BUY.source, 4, BALANCES, ORDERS, CONTRACTS, SEQUENCE,
                "", "",  # no lease to check (ledger.buy's fence), no worker
                client_order_id, account["id"], cents(start), cents(stake),
                order["deadline_ms"], order["asset"], order["direction"], order["expiry_seconds"],
            )  # fmt: skip
            return str(reply[0])[:200]
        return _buy_deriv(settings.deriv.ws_url, settings.deriv.app_id, credentials, stake, order,
                          client_order_id)  # fmt: skip
    finally:
        r.close()


def _buy_deriv(
    url: str,
    app_id: str,
    credentials: dict[str, str],
    stake: Decimal,
    order: dict[str, Any],
    client_order_id: str,
) -> str:
    with connect(with_app_id(url, app_id), open_timeout=10, close_timeout=1) as ws:
        ws.send(json.dumps({"authorize": credentials["token"], "req_id": 1}))
        reply = json.loads(ws.recv(timeout=10))
        if "error" in reply:
            return f"rejected:{reply['error']['code']}"
        request = {
            "buy": "1",
            "price": float(stake),
            "parameters": {
                "contract_type": order["direction"],
                "symbol": CATALOGUE["deriv"].capabilities["assets"][order["asset"]],
                "duration": order["expiry_seconds"],
                "duration_unit": "s",
                "basis": "stake",
                "amount": float(stake),
                "currency": "USD",
            },
            "passthrough": {"client_order_id": client_order_id, "signal_id": order["tag"]},
            "req_id": 2,
        }
        ws.send(json.dumps(request))
        reply = json.loads(ws.recv(timeout=10))
        if "error" in reply:
            return f"rejected:{reply['error']['code']}"
        return f"placed:{reply['buy']['contract_id']}"


def worker_argv(broker: str, redis_url: str) -> list[str]:
    """A plain ``rq worker`` on the broker's baseline queue. ``-c bench.baseline`` makes it import
    this module before forking, RQ's advice for preloading job code, so that each forked job
    does not import it again."""
    return [sys.executable, "-m", "rq.cli", "worker", queue_name(broker), "-u", redis_url,
            "-c", "bench.baseline"]  # fmt: skip


def enqueue(redis_url: str, order: dict[str, Any], subscriptions: dict[str, list[str]]) -> None:
    """One job per subscriber, each broker's jobs in one ``enqueue_many`` on its queue."""
    r = redis.Redis.from_url(redis_url)
    for broker, ids in subscriptions.items():
        Queue(queue_name(broker), connection=r).enqueue_many(
            [
                Queue.prepare_data(
                    buy,
                    args=(order, sub_id),
                    result_ttl=0,
                    failure_ttl=3600,
                    timeout=JOB_TIMEOUT_S,
                )
                for sub_id in ids
            ]
        )
    r.close()
