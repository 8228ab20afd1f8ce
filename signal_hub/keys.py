"""The Redis key layout shared by the hub and the workers.

Directory (kept in step with the store by the hub, rebuilt from it at start-up):
  ``dir:{channel}:{broker}``  SET of subscription ids of a channel on one broker
  ``dirbrokers:{channel}``    SET of brokers with subscribers in that channel
  ``dirspare:{channel}:{broker}`` a ready copy of ``dir:``, which the next expansion renames into
                              its work set; deleted by every change of ``dir:``
  ``chan:{channel}``          JSON: who may send, delay budget, allowed assets
  ``sub:{subscription}``      JSON: account, stake, limits, paused
  ``acct:{account}``          JSON: broker, currency, credentials (encrypted)

Per signal (expire a day after the signal):
  ``sig:{signal}``            HASH: asset, direction, expiry, created/deadline ms, status
  ``work:{signal}:{broker}``  SET of subscription ids not yet claimed
  ``state:{signal}``          HASH subscription -> ``c|worker`` claimed, ``s|worker|stake``
                              sending, ``d`` done, ``r`` handed back (unclaimed again)

Across signals:
  ``results``                 STREAM of signal / execution / settlement records for the hub
  ``active``                  ZSET ``signal|broker`` -> deadline, work not yet drained
  ``scheduled``               ZSET signal -> the instant (ms) a scheduled signal fans out
  ``orphans``                 ZSET ``signal|broker|subscription`` -> when to reconcile a purchase
                              whose worker died or lost its answer, with the broker
  ``claims:{worker}``         SET ``signal|broker|subscription`` a worker holds
  ``worker:{worker}``         heartbeat key with a TTL; its absence marks a dead worker
  ``workers:{broker}``        SET of worker ids that ever served a broker
  ``hub:{consumer}``          a hub's heartbeat: its pending results are its own while it lives
  ``online``, ``online:{hub}``  HASH user -> sockets on ``/subscriber``: on all hubs, on one
  ``settle:{broker}``         ZSET of placed contracts -> due time (ms), for settlement
  ``recorded:{account}``      SET of contract ids recorded for trades of an account (a day)
  ``daily:{subscription}:{yyyymmdd}`` HASH trades, loss: the risk limits' counters
  ``health:{account}``        HASH: the last check of an account by its broker's workers
  ``checkreply:{id}``         LIST: a worker's answer to one account check
  ``revoked:{family}``        an ended session, kept while its access tokens could still live
  ``sockets:{user}``          HASH ``namespace|sid`` -> session family, the user's open sockets
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

PREFIX = "ctc:"
RESULTS = PREFIX + "results"
RESULTS_GROUP = "hub"
ACTIVE = PREFIX + "active"
SCHEDULED = PREFIX + "scheduled"
ORPHANS = PREFIX + "orphans"
ONLINE = PREFIX + "online"
SIGNAL_TTL_S = 24 * 3600


def directory(channel_id: str, broker: str) -> str:
    return f"{PREFIX}dir:{channel_id}:{broker}"


def directory_spare(channel_id: str, broker: str) -> str:
    return f"{PREFIX}dirspare:{channel_id}:{broker}"


def directory_brokers(channel_id: str) -> str:
    return f"{PREFIX}dirbrokers:{channel_id}"


def channel(channel_id: str) -> str:
    return f"{PREFIX}chan:{channel_id}"


def subscription(subscription_id: str) -> str:
    return f"{PREFIX}sub:{subscription_id}"


def account(account_id: str) -> str:
    return f"{PREFIX}acct:{account_id}"


def broker_accounts(broker: str) -> str:
    return f"{PREFIX}accts:{broker}"


def signal(signal_id: str) -> str:
    return f"{PREFIX}sig:{signal_id}"


def work(signal_id: str, broker: str) -> str:
    return f"{PREFIX}work:{signal_id}:{broker}"


def state(signal_id: str) -> str:
    return f"{PREFIX}state:{signal_id}"


def dedupe(channel_id: str, sender_id: str, client_signal_id: str) -> str:
    return f"{PREFIX}dedupe:{channel_id}:{sender_id}:{client_signal_id}"


def claims(worker_id: str) -> str:
    return f"{PREFIX}claims:{worker_id}"


def worker_heartbeat(worker_id: str) -> str:
    return f"{PREFIX}worker:{worker_id}"


def hub_heartbeat(consumer: str) -> str:
    return f"{PREFIX}hub:{consumer}"


def workers(broker: str) -> str:
    return f"{PREFIX}workers:{broker}"


def settle_queue(broker: str) -> str:
    return f"{PREFIX}settle:{broker}"


def online_at(hub_id: str) -> str:
    return f"{ONLINE}:{hub_id}"


def recorded_contracts(account_id: str) -> str:
    return f"{PREFIX}recorded:{account_id}"


def settled(trade_id: str) -> str:
    return f"{PREFIX}settled:{trade_id}"


def daily(subscription_id: str, day: str) -> str:
    return f"{PREFIX}daily:{subscription_id}:{day}"


def utc_day(ms: int | None = None) -> str:
    """The UTC calendar day (``yyyymmdd``) that daily risk counters are kept by."""
    return datetime.fromtimestamp((now_ms() if ms is None else ms) / 1000, UTC).strftime("%Y%m%d")


def now_ms() -> int:
    return int(time.time() * 1000)


def account_health(account_id: str) -> str:
    """HASH status, balance, currency, checked_ms, message: the last check of an account."""
    return f"{PREFIX}health:{account_id}"


def check_reply(request_id: str) -> str:
    """LIST a worker pushes its answer to an account check onto, for the hub waiting on it."""
    return f"{PREFIX}checkreply:{request_id}"


def revoked_family(family: str) -> str:
    """Present while the access tokens of an ended session (a refresh family) could still live."""
    return f"{PREFIX}revoked:{family}"


def sockets_of(user_id: str) -> str:
    """HASH ``namespace|sid`` -> session family: a user's open sockets on every hub."""
    return f"{PREFIX}sockets:{user_id}"


def rate_limit(scope: str, subject: str) -> str:
    return f"{PREFIX}rl:{scope}:{subject}"


def trade_id(signal_id: str, subscription_id: str) -> str:
    """Deterministic, so every retry, reaper and reconciliation names the same trade."""
    return f"{signal_id}-{subscription_id}"


def queue_name(broker: str) -> str:
    """The RQ queue of a broker's worker pool."""
    return f"broker.{broker}"
