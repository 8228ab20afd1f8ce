"""The Redis key layout shared by the hub and the workers, and how long each kind of key lives.

A part of a key in braces is its hash tag: Redis Cluster places every key with the same tag in the
same slot, and a script may only touch keys of one slot there. The keys of one signal share the
signal's id as their tag (``{S}``), the directory keys of one channel the channel's id (``{C}``),
the keys of one worker its id (``{W}``); every script is given each key it touches (``KEYS``),
never builds a key name itself. Which scripts still span several tags is said in
:mod:`core.scripts`.

Sharded (``REDIS_SHARDS`` or ``REDIS_CLUSTER``, :mod:`core.shards`), every key of the hot path is
on one shard and carries that shard's tag first (:func:`on_shard`): ``ctc:{s1}:work:{S}:b``.
Redis hashes a key by its first braces, so all of a shard's keys share one slot and every script
run on a shard touches one slot. Unsharded (the default) the tag is empty and the keys are the
ones below.

Directory (kept in step with the store by the hub, rebuilt from it at start-up):
  ``chan:{C}``                JSON: who may send, delay budget, allowed assets
  ``dir:{C}:<broker>``        SET of subscription ids of a channel on one broker
  ``dirspare:{C}:<broker>``   a ready copy of ``dir:``, which the next expansion renames into
                              its work set; deleted by every change of ``dir:``
  ``subs:{C}``                HASH subscription id -> JSON: account, stake, limits, paused
  ``accounts:<broker>``       HASH account id -> JSON: currency, credentials (encrypted)
  ``dedupe:{C}:<sender>:<client signal id>``  the first answer to a signal sent again

Per signal (expire a day after the signal):
  ``sig:{S}``                 HASH: asset, direction, expiry, created/deadline ms, status
  ``work:{S}:<broker>``       SET of subscription ids not yet claimed
  ``state:{S}``               HASH subscription -> ``c|worker`` claimed, ``s|worker|stake``
                              sending, ``d`` done, ``r`` handed back (unclaimed again)
  ``settled:{S}:<subscription>``  present once the trade's settlement was recorded (two days)
  ``unreplicated:{S}``        SET of subscription ids marked ``sending`` and then not sent,
                              because no replica confirmed the mark (``REDIS_WAIT_REPLICAS``)

Per worker:
  ``claims:{W}``              SET ``signal|broker|subscription`` a worker holds
  ``worker:{W}``              the worker's lease: its token (random, one per lease) with a TTL,
                              renewed while it is the same token; its absence marks a dead worker
  ``replprobe:{W}``           a write the worker makes before ``WAIT``, so that ``WAIT`` on any
                              connection covers the worker's earlier marks (a few seconds)
  ``workerinfo:{W}``          HASH what the admin console shows of a live worker (host, pid,
                              metrics port, sessions, rate budget), written with the heartbeat
  ``workers:<broker>``        SET of worker ids that ever served a broker

Across signals:
  ``results``                 STREAM of signal / execution / settlement records for the hub
  ``active``                  ZSET ``signal|broker`` -> deadline, work not yet drained
  ``scheduled``               ZSET signal -> the instant (ms) a scheduled signal fans out
  ``orphans``                 ZSET ``signal|broker|subscription`` -> when to reconcile a purchase
                              whose worker died or lost its answer, with the broker
  ``settle:<broker>``         ZSET of placed contracts -> due time (ms), for settlement
  ``recorded:<account>``      SET of contract ids recorded for trades of an account (a day)
  ``daily:<subscription>:<yyyymmdd>`` HASH trades, loss: the risk limits' counters (two days)
  ``hub:<consumer>``          a hub's heartbeat: its pending results are its own while it lives
  ``online``, ``online:<hub>``  HASH user -> sockets on ``/subscriber``: on all hubs, on one
  ``health:<account>``        HASH: the last check of an account by its broker's workers
  ``healthdue:<broker>``      ZSET account id -> when its next periodic check is due (ms)
  ``activesubs:<broker>``     SET of the broker's subscriptions that are not paused (a gauge)
  ``reaper:actions``          LIST (newest first, capped) of the reaper's recent actions, JSON
  ``checkreply:<id>``         LIST: a worker's answer to one account check
  ``revoked:<family>``        an ended session, kept while its access tokens could still live
  ``suspended:<user>``        a user an operator suspended (its value: the reason)
  ``sockets:<user>``          HASH ``namespace|sid`` -> session family, the user's open sockets
  ``rl:<scope>:<subject>``    a rate limit's window
  ``fault:kill``, ``fault:count``  the fault-injection suite's armed kill point
"""

from __future__ import annotations

PREFIX = "ctc:"
RESULTS = PREFIX + "results"
RESULTS_GROUP = "hub"
ACTIVE = PREFIX + "active"
SCHEDULED = PREFIX + "scheduled"
ORPHANS = PREFIX + "orphans"
ONLINE = PREFIX + "online"
DIRECTORY_BUILT = PREFIX + "directory:built"  # STRING: when a hub last rebuilt the directory (ms)
FAULT_ARMED = PREFIX + "fault:kill"
FAULT_COUNT = PREFIX + "fault:count"
REAPER_ACTIONS = PREFIX + "reaper:actions"
REAPER_ACTIONS_KEPT = 500

DAY_S = 24 * 3600
SIGNAL_TTL_S = DAY_S  # a signal's keys, its resend answer
DAILY_TTL_S = 2 * DAY_S  # a day's risk counters, kept past midnight for late settlements
SETTLED_TTL_S = 2 * DAY_S  # the guard that records a settlement once
RECORDED_TTL_S = DAY_S  # contracts recorded for an account (reconciliation by details)
SOCKETS_TTL_S = DAY_S  # a dead hub's socket entries


def on_shard(tag: str, key: str) -> str:
    """``key`` on the shard whose hash tag is ``tag`` (unchanged for the unsharded ``""``)."""
    if not tag:
        return key
    return f"{PREFIX}{{{tag}}}:{key.removeprefix(PREFIX)}"


# -- the directory, by channel -------------------------------------------------------------------


def channel(channel_id: str) -> str:
    return f"{PREFIX}chan:{{{channel_id}}}"


def directory(channel_id: str, broker: str) -> str:
    return f"{PREFIX}dir:{{{channel_id}}}:{broker}"


def directory_spare(channel_id: str, broker: str) -> str:
    return f"{PREFIX}dirspare:{{{channel_id}}}:{broker}"


def subscriptions(channel_id: str) -> str:
    return f"{PREFIX}subs:{{{channel_id}}}"


def accounts(broker: str) -> str:
    return f"{PREFIX}accounts:{broker}"


def dedupe(channel_id: str, sender_id: str, client_signal_id: str) -> str:
    return f"{PREFIX}dedupe:{{{channel_id}}}:{sender_id}:{client_signal_id}"


# -- a signal --------------------------------------------------------------------------------


def signal(signal_id: str) -> str:
    return f"{PREFIX}sig:{{{signal_id}}}"


def work(signal_id: str, broker: str) -> str:
    return f"{PREFIX}work:{{{signal_id}}}:{broker}"


def state(signal_id: str) -> str:
    return f"{PREFIX}state:{{{signal_id}}}"


def settled(signal_id: str, subscription_id: str) -> str:
    return f"{PREFIX}settled:{{{signal_id}}}:{subscription_id}"


def unreplicated(signal_id: str) -> str:
    """SET of the signal's subscribers a worker marked and did not send: no replica confirmed
    the mark in time, so the reaper ends them ``skipped``/``not_replicated``."""
    return f"{PREFIX}unreplicated:{{{signal_id}}}"


def trade_id(signal_id: str, subscription_id: str) -> str:
    """Deterministic, so every retry, reaper and reconciliation names the same trade."""
    return f"{signal_id}-{subscription_id}"


# -- workers ---------------------------------------------------------------------------------


def claims(worker_id: str) -> str:
    return f"{PREFIX}claims:{{{worker_id}}}"


def worker_heartbeat(worker_id: str) -> str:
    return f"{PREFIX}worker:{{{worker_id}}}"


def replication_probe(worker_id: str) -> str:
    return f"{PREFIX}replprobe:{{{worker_id}}}"


def workers(broker: str) -> str:
    return f"{PREFIX}workers:{broker}"


def worker_info(worker_id: str) -> str:
    """HASH of a live worker's figures for the console; it lapses with the worker's lease."""
    return f"{PREFIX}workerinfo:{{{worker_id}}}"


def queue_name(broker: str) -> str:
    """The RQ queue of a broker's worker pool."""
    return f"broker.{broker}"


# -- across signals ------------------------------------------------------------------------------


def settle_queue(broker: str) -> str:
    return f"{PREFIX}settle:{broker}"


def recorded_contracts(account_id: str) -> str:
    return f"{PREFIX}recorded:{account_id}"


def daily(subscription_id: str, day: str) -> str:
    return f"{PREFIX}daily:{subscription_id}:{day}"


def hub_heartbeat(consumer: str) -> str:
    return f"{PREFIX}hub:{consumer}"


def hub_takeover(consumer: str) -> str:
    """STRING: the live hub taking over a dead hub's pending results, so only one does."""
    return f"{PREFIX}takeover:{consumer}"


def online_at(hub_id: str) -> str:
    return f"{ONLINE}:{hub_id}"


def account_health(account_id: str) -> str:
    """HASH status, balance, currency, checked_ms, message: the last check of an account."""
    return f"{PREFIX}health:{account_id}"


def health_due(broker: str) -> str:
    """ZSET account id -> when the broker's workers next check it (ms), taken in batches."""
    return f"{PREFIX}healthdue:{broker}"


def active_subscribers(broker: str) -> str:
    """SET of the broker's subscriptions that are not paused, kept by the directory."""
    return f"{PREFIX}activesubs:{broker}"


def check_reply(request_id: str) -> str:
    """LIST a worker pushes its answer to an account check onto, for the hub waiting on it."""
    return f"{PREFIX}checkreply:{request_id}"


def suspended_user(user_id: str) -> str:
    """Present while an operator has suspended the user: every token of theirs is refused."""
    return f"{PREFIX}suspended:{user_id}"


def revoked_family(family: str) -> str:
    """Present while the access tokens of an ended session (a refresh family) could still live."""
    return f"{PREFIX}revoked:{family}"


def sockets_of(user_id: str) -> str:
    """HASH ``namespace|sid`` -> session family: a user's open sockets on every hub."""
    return f"{PREFIX}sockets:{user_id}"


def rate_limit(scope: str, subject: str) -> str:
    return f"{PREFIX}rl:{scope}:{subject}"
