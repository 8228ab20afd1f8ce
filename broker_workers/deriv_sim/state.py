"""The simulator's memory: accounts, contracts, the purchase log, settlement and the fault plan.

Everything here is plain synchronous code driven by one event loop, so a purchase (check, debit,
record) is atomic, and settlement is a pure function of the seeded price feed: a contract settles
the same way whenever it is first looked at after expiry, and its balance is credited exactly once.
"""

from __future__ import annotations

import heapq
import random
import time
from dataclasses import dataclass, field, fields
from decimal import ROUND_DOWN, Decimal
from typing import Any

from broker_workers import price_feed

CENT = Decimal("0.01")
MIN_STAKE = Decimal("0.35")
MAX_STAKE = Decimal("50000")
MAX_DURATION_S = 24 * 3600

# Deriv symbol -> canonical asset of the price feed.
SYMBOLS: dict[str, str] = {
    "frxEURUSD": "EURUSD",
    "frxGBPUSD": "GBPUSD",
    "frxUSDJPY": "USDJPY",
    "frxAUDUSD": "AUDUSD",
    "frxUSDCAD": "USDCAD",
    "frxEURJPY": "EURJPY",
    **{name: name for name in ("R_10", "R_25", "R_50", "R_75", "R_100")},
}
DISPLAY_NAMES: dict[str, str] = {
    **{s: f"{a[:3]}/{a[3:]}" for s, a in SYMBOLS.items() if s.startswith("frx")},
    **{f"R_{n}": f"Volatility {n} Index" for n in (10, 25, 50, 75, 100)},
}


def payout_rate(symbol: str) -> Decimal:
    """Net payout rate: synthetic indices pay more than forex, as on Deriv."""
    return Decimal("0.85") if symbol.startswith("frx") else Decimal("0.95")


def now_ms() -> int:
    return int(time.time() * 1000)


def money(value: Decimal) -> float:
    """A money amount as the JSON number Deriv sends (two decimals, no float noise)."""
    return float(value.quantize(CENT))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class SimError(Exception):
    """A Deriv error answer: ``code`` and ``message`` as the real API sends them."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


@dataclass
class Transaction:
    transaction_id: int
    action_type: str  # buy | sell | deposit
    amount: Decimal
    balance_after: Decimal
    time: int
    contract_id: int | None = None


@dataclass
class Account:
    token: str
    loginid: str
    balance: Decimal
    currency: str
    created_at: int
    transactions: list[Transaction] = field(default_factory=list)


@dataclass
class Contract:
    contract_id: int
    buy_transaction_id: int
    loginid: str
    symbol: str
    contract_type: str  # CALL | PUT
    currency: str
    stake: Decimal
    payout: Decimal
    purchase_ms: int
    start: int  # epoch seconds
    expiry: int  # epoch seconds
    entry: float
    exit: float | None = None
    status: str = "open"  # open | won | lost | cancelled (refund: the stake comes back)
    sell_price: Decimal | None = None
    sell_transaction_id: int | None = None

    @property
    def asset(self) -> str:
        return SYMBOLS[self.symbol]

    @property
    def is_sold(self) -> bool:
        return self.sell_price is not None

    @property
    def shortcode(self) -> str:
        payout = format(self.payout.normalize(), "f")
        return (
            f"{self.contract_type}_{self.symbol.upper()}_{payout}_{self.start}_{self.expiry}_S0P_0"
        )

    @property
    def longcode(self) -> str:
        side = "higher" if self.contract_type == "CALL" else "lower"
        return (
            f"Win payout if {DISPLAY_NAMES[self.symbol]} is strictly {side} than entry spot at "
            f"{self.expiry - self.start} seconds after contract start time."
        )


@dataclass
class Faults:
    """What can go wrong, as data. Every random draw comes from one seeded generator."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    drop_after_debit_rate: float = 0.0  # purchase made and debited, reply never sent
    error_rates: dict[str, float] = field(default_factory=dict)  # code -> rate, per purchase
    error_queue: list[str] = field(default_factory=list)  # codes for the next purchases, in order
    buys_per_minute: int = 0  # per connection, over buy, multi-account buy and proposal; 0 = off
    # What website_status reports for the group buy belongs to (Deriv documents 360 a minute);
    # reporting only: buys_per_minute is what the simulator enforces.
    buy_limit_per_minute: int = 360
    disconnect_after_messages: int = 0  # one-shot: the Nth message from now closes its socket
    idle_timeout_s: float = 0.0  # close a connection that sent nothing for this long; 0 = off
    closed_symbols: list[str] = field(default_factory=list)  # answer MarketIsClosed
    seed: int | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Faults:
        """Validate a JSON object of faults; keys left out take their defaults."""
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown fault keys: {', '.join(unknown)}")
        faults = cls(**data)
        numbers = [faults.latency_ms, faults.jitter_ms, faults.drop_after_debit_rate]
        numbers += [faults.idle_timeout_s, faults.buys_per_minute, faults.disconnect_after_messages]
        numbers += [faults.buy_limit_per_minute]
        rates = faults.error_rates
        if (
            not all(_is_number(n) and n >= 0 for n in numbers)
            or not isinstance(rates, dict)
            or not all(_is_number(r) and 0 <= r <= 1 for r in rates.values())
            or not faults.drop_after_debit_rate <= 1
            or not all(isinstance(v, list) for v in (faults.error_queue, faults.closed_symbols))
            or not (faults.seed is None or isinstance(faults.seed, int))
        ):
            raise ValueError("faults: numbers must be >= 0, rates between 0 and 1, lists lists")
        faults.error_queue = [str(code) for code in faults.error_queue]
        return faults


@dataclass
class Plan:
    """The faults drawn for one incoming message, at arrival, so runs repeat under a seed."""

    delay_s: float = 0.0
    drop_reply: bool = False
    errors: list[str | None] = field(default_factory=list)  # one per purchase in the message


class Simulator:
    """The broker: accounts by token, contracts, the purchase log, the fault plan."""

    def __init__(self, price_seed: int) -> None:
        self.price_seed = price_seed
        self.reset()

    def reset(self) -> None:
        self.accounts: dict[str, Account] = {}  # by token
        self.by_loginid: dict[str, Account] = {}
        self.contracts: dict[int, Contract] = {}
        self.purchases: list[dict[str, Any]] = []
        self.rate_limited = 0  # RateLimit answers given, on every connection
        self._open: list[tuple[int, int]] = []  # heap of (expiry, contract_id)
        self._ids = {
            "loginid": 1000000,
            "contract": 250000000,
            "transaction": 500000000,
            "connection": 0,
        }
        self.set_faults(Faults())

    def set_faults(self, faults: Faults) -> None:
        self.faults = faults
        self.rng = random.Random(faults.seed)
        self._messages = 0

    def _next(self, kind: str) -> int:
        self._ids[kind] += 1
        return self._ids[kind]

    def new_connection(self) -> int:
        """The number of a connection just accepted (1, 2, ...); also how many there were."""
        return self._next("connection")

    @property
    def connections_accepted(self) -> int:
        return self._ids["connection"]

    # -- accounts ---------------------------------------------------------------------------

    def upsert_account(self, token: str, balance: Decimal, currency: str) -> Account:
        """Create the account of ``token``, or reset its balance and currency (same loginid)."""
        account = self.accounts.get(token)
        if account is None:
            account = Account(token, f"VRTC{self._next('loginid')}", balance, currency, now_ms())
            self.accounts[token] = account
            self.by_loginid[account.loginid] = account
        account.balance, account.currency = balance, currency
        self._record(account, "deposit", balance, None)
        return account

    def _record(
        self, account: Account, action: str, amount: Decimal, contract_id: int | None
    ) -> int:
        txn = Transaction(
            self._next("transaction"),
            action,
            amount,
            account.balance,
            now_ms() // 1000,
            contract_id,
        )
        account.transactions.append(txn)
        return txn.transaction_id

    # -- faults -----------------------------------------------------------------------------

    def should_disconnect(self) -> bool:
        """Count one incoming message; True once, for the Nth message after the fault was set."""
        n = self.faults.disconnect_after_messages
        if n <= 0:
            return False
        self._messages += 1
        if self._messages < n:
            return False
        self.faults.disconnect_after_messages = 0
        return True

    def plan(self, purchases: int) -> Plan:
        f, rng = self.faults, self.rng
        plan = Plan(delay_s=f.latency_ms / 1000)
        if f.jitter_ms > 0:
            plan.delay_s += rng.uniform(0, f.jitter_ms) / 1000
        if purchases and f.drop_after_debit_rate > 0:
            plan.drop_reply = rng.random() < f.drop_after_debit_rate
        for _ in range(purchases):
            code: str | None = f.error_queue.pop(0) if f.error_queue else None
            for candidate, rate in sorted(f.error_rates.items()):
                if code is None and rate > 0 and rng.random() < rate:
                    code = candidate
            plan.errors.append(code)
        return plan

    # -- trading ----------------------------------------------------------------------------

    def purchase(
        self,
        account: Account,
        symbol: str,
        contract_type: str,
        stake: Decimal,
        duration_s: int,
        *,
        token: str,
        call: str,
        passthrough: dict[str, Any] | None,
        token_index: int | None = None,
        connection: int = 0,
    ) -> Contract:
        """Debit and open one contract; the caller has validated everything."""
        if stake > account.balance:
            raise SimError(
                "InsufficientBalance",
                f"Your account balance ({account.currency} {money(account.balance):.2f}) is "
                f"insufficient to buy this contract ({account.currency} {money(stake):.2f}).",
            )
        at = now_ms()
        start = at // 1000
        account.balance -= stake
        contract_id = self._next("contract")
        txn = self._record(account, "buy", -stake, contract_id)
        contract = Contract(
            contract_id=contract_id,
            buy_transaction_id=txn,
            loginid=account.loginid,
            symbol=symbol,
            contract_type=contract_type,
            currency=account.currency,
            stake=stake,
            payout=(stake * (1 + payout_rate(symbol))).quantize(CENT, ROUND_DOWN),
            purchase_ms=at,
            start=start,
            expiry=start + duration_s,
            entry=price_feed.price(SYMBOLS[symbol], at, self.price_seed),
        )
        self.contracts[contract_id] = contract
        heapq.heappush(self._open, (contract.expiry, contract_id))
        self.purchases.append(
            {
                "call": call,
                "token": token,
                "token_index": token_index,
                "connection": connection,
                "loginid": account.loginid,
                "contract_id": contract_id,
                "passthrough": passthrough,
                "symbol": symbol,
                "contract_type": contract_type,
                "amount": money(stake),
                "time": at,
            }
        )
        return contract

    def settle_due(self) -> None:
        """Settle every contract whose expiry has passed, crediting each balance once."""
        now_s = now_ms() // 1000
        while self._open and self._open[0][0] <= now_s:
            _, contract_id = heapq.heappop(self._open)
            c = self.contracts[contract_id]
            c.exit = price_feed.price(c.asset, c.expiry * 1000, self.price_seed)
            outcome, _ = price_feed.settle(
                c.contract_type, c.entry, c.exit, float(c.stake), float(c.payout)
            )
            c.status = {"won": "won", "lost": "lost", "refund": "cancelled"}[outcome]
            c.sell_price = {"won": c.payout, "lost": Decimal("0"), "refund": c.stake}[outcome]
            account = self.by_loginid[c.loginid]
            account.balance += c.sell_price
            c.sell_transaction_id = self._record(account, "sell", c.sell_price, contract_id)
            # the sell happens at expiry, not when we first noticed it
            account.transactions[-1].time = c.expiry
