"""The hub's services, built once per process and shared by the REST and Socket.IO handlers."""

from __future__ import annotations

from dataclasses import dataclass

import socketio
from redis.asyncio import Redis

from broker_workers.adapters import resolve_adapter
from broker_workers.adapters.base import Capabilities
from signal_hub.account_checks import AccountChecks
from signal_hub.auth import Tokens
from signal_hub.cancel import Canceller
from signal_hub.connections import redis_client
from signal_hub.crypto import CredentialsBox
from signal_hub.directory import Directory
from signal_hub.dispatch import Dispatcher
from signal_hub.intake import Intake
from signal_hub.presence import Presence
from signal_hub.ratelimit import RateLimiter
from signal_hub.sessions import Sessions
from signal_hub.settings import Settings
from signal_hub.store import Store


def broker_capabilities(enabled: list[str]) -> dict[str, Capabilities]:
    """The capabilities of the brokers this deployment offers (``BROKERS``), by name."""
    return {name: resolve_adapter(name).capabilities for name in enabled}


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
    brokers: dict[str, Capabilities]
    sio: socketio.AsyncServer

    @classmethod
    def build(cls, settings: Settings, sio: socketio.AsyncServer) -> Hub:
        redis = redis_client(settings.redis_url)
        store = Store.open(settings)
        brokers = broker_capabilities(settings.brokers)
        dispatcher = Dispatcher(settings.redis_url, settings.drain_batch_size)
        assets = {asset for caps in brokers.values() for asset in caps["assets"]}
        return cls(
            settings=settings,
            redis=redis,
            store=store,
            directory=Directory(redis, store),
            tokens=Tokens(settings, store, redis),
            credentials=CredentialsBox(settings),
            intake=Intake(redis, dispatcher, assets, settings.schedule_max_ahead_s),
            canceller=Canceller(redis),
            dispatcher=dispatcher,
            limiter=RateLimiter(redis),
            presence=Presence(redis),
            sessions=Sessions(redis, sio),
            account_checks=AccountChecks(
                settings.redis_url, redis, settings.broker_check_timeout_s
            ),
            brokers=brokers,
            sio=sio,
        )

    async def close(self) -> None:
        await self.intake.close()
        self.dispatcher.close()
        self.account_checks.close()
        await self.store.close()
        await self.redis.aclose()
