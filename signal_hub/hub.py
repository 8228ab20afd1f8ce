"""The hub's services, built once per process and shared by the REST and Socket.IO handlers."""

from __future__ import annotations

from dataclasses import dataclass

import socketio
from redis.asyncio import Redis

from core.brokers import Capabilities, capabilities_of
from core.connections import redis_client
from core.crypto import CredentialsBox
from core.dispatch import Dispatcher
from core.shards import Shards, open_shards
from signal_hub.account_checks import AccountChecks
from signal_hub.auth import Tokens
from signal_hub.cancel import Canceller
from signal_hub.directory import Directory
from signal_hub.intake import Intake
from signal_hub.presence import Presence
from signal_hub.ratelimit import RateLimiter
from signal_hub.sessions import Sessions
from signal_hub.settings import Settings
from signal_hub.store import Store


@dataclass
class Hub:
    settings: Settings
    redis: Redis
    store: Store
    directory: Directory
    tokens: Tokens
    credentials: CredentialsBox
    intake: Intake
    canceller: Canceller
    dispatcher: Dispatcher
    limiter: RateLimiter
    presence: Presence
    sessions: Sessions
    account_checks: AccountChecks
    brokers: dict[str, Capabilities]  # those this deployment offers (BROKERS), from the catalogue
    sio: socketio.AsyncServer
    shards: Shards  # the hot path's Redis shards (core.shards); REDIS_URL alone by default

    @classmethod
    def build(cls, settings: Settings, sio: socketio.AsyncServer) -> Hub:
        redis = redis_client(settings.redis_url)
        store = Store.open(settings)
        brokers = capabilities_of(settings.brokers)
        dispatcher = Dispatcher(settings.redis_url, settings.drain_batch_size)
        shards = open_shards(settings, redis)
        return cls(
            settings=settings,
            redis=redis,
            store=store,
            directory=Directory(redis, store, list(brokers), shards),
            tokens=Tokens(settings, store, redis),
            credentials=CredentialsBox(settings.broker_credentials_key),
            intake=Intake(redis, dispatcher, brokers, settings.schedule_max_ahead_s, shards),
            canceller=Canceller(redis, list(brokers), shards),
            dispatcher=dispatcher,
            limiter=RateLimiter(redis),
            presence=Presence(redis),
            sessions=Sessions(redis, sio),
            account_checks=AccountChecks(
                settings.redis_url, redis, settings.broker_check_timeout_s
            ),
            brokers=brokers,
            sio=sio,
            shards=shards,
        )

    async def close(self) -> None:
        await self.intake.close()
        self.dispatcher.close()
        self.account_checks.close()
        await self.store.close()
        await self.shards.aclose()
        await self.redis.aclose()
