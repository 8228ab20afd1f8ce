"""The store's queries, on the embedded store and, when MONGODB_URL is set, on a real MongoDB."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from bson.errors import InvalidDocument
from pymongo import DeleteOne, InsertOne, UpdateOne
from pymongo.errors import DuplicateKeyError

from signal_hub.settings import load_settings
from signal_hub.store import Store, new_id, utcnow

BACKENDS = ["embedded"] + (["mongodb"] if os.environ.get("MONGODB_URL") else [])


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    env = {"APP_ENV": "development", "MONGODB_DB": f"ctc_test_{uuid.uuid4().hex[:8]}"}
    if request.param == "mongodb":
        env["MONGODB_URL"] = os.environ["MONGODB_URL"]
    store = Store.open(load_settings(env))
    await store.ensure_indexes()
    yield store
    if not store.embedded:
        await store._client.drop_database(env["MONGODB_DB"])  # type: ignore[union-attr]
    await store.close()


async def test_unique_email_and_subscription(store: Store) -> None:
    await store.users.insert_one({"_id": new_id(), "email": "a@example.com"})
    with pytest.raises(DuplicateKeyError):
        await store.users.insert_one({"_id": new_id(), "email": "a@example.com"})
    await store.subscriptions.insert_one({"_id": new_id(), "channel_id": "c", "user_id": "u"})
    with pytest.raises(DuplicateKeyError):
        await store.subscriptions.insert_one({"_id": new_id(), "channel_id": "c", "user_id": "u"})


async def test_trade_upserts_converge_in_either_order(store: Store) -> None:
    execution = {"signal_id": "s", "status": "placed", "stake": 10.0, "created_at": utcnow()}
    settlement = {"outcome": "won", "profit": 8.5}
    ops = [UpdateOne({"_id": "t1"}, {"$set": execution}, upsert=True),
           UpdateOne({"_id": "t1"}, {"$set": settlement}, upsert=True),
           UpdateOne({"_id": "t2"}, {"$set": settlement}, upsert=True),
           UpdateOne({"_id": "t2"}, {"$set": execution}, upsert=True)]  # fmt: skip
    result = await store.trades.bulk_write(ops, ordered=False)
    assert result.upserted_count == 2
    await store.trades.bulk_write(ops, ordered=False)  # a record relayed twice
    docs = await store.trades.find({}).sort("_id", 1).to_list()
    assert [d["_id"] for d in docs] == ["t1", "t2"]
    assert all(d["outcome"] == "won" and d["status"] == "placed" for d in docs)


async def test_aggregate_sort_limit_and_single_use_updates(store: Store) -> None:
    for i, status in enumerate(["placed", "placed", "rejected"]):
        await store.trades.insert_one({"_id": f"t{i}", "signal_id": "s", "status": status, "n": i})
    cursor = await store.trades.aggregate(
        [{"$match": {"signal_id": "s"}}, {"$group": {"_id": "$status", "n": {"$sum": 1}}}]
    )
    assert {r["_id"]: r["n"] for r in await cursor.to_list()} == {"placed": 2, "rejected": 1}
    top = await store.trades.find({"signal_id": "s"}).sort("n", -1).limit(2).to_list()
    assert [d["_id"] for d in top] == ["t2", "t1"]
    await store.refresh_tokens.insert_one({"_id": "j", "used_at": None, "revoked": False})
    first = await store.refresh_tokens.find_one_and_update(
        {"_id": "j", "used_at": None}, {"$set": {"used_at": utcnow()}}
    )
    second = await store.refresh_tokens.find_one_and_update(
        {"_id": "j", "used_at": None}, {"$set": {"used_at": utcnow()}}
    )
    assert first is not None and second is None
    assert await store.ping()


def durable_store(path: Path) -> Store:
    return Store.open(load_settings({"APP_ENV": "development", "EMBEDDED_STORE_PATH": str(path)}))


async def test_embedded_store_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "store.jsonl"
    store = durable_store(path)
    await store.ensure_indexes()
    await store.users.insert_one({"_id": "u1", "email": "a@example.com", "created_at": utcnow()})
    await store.users.insert_many([{"email": "b@example.com"}, {"email": "c@example.com"}])
    await store.users.update_one({"_id": "u1"}, {"$set": {"display_name": "A"}})
    await store.channels.update_one({"name": "n"}, {"$set": {"x": 1}}, upsert=True)
    await store.users.delete_one({"email": "c@example.com"})
    await store.refresh_tokens.insert_one({"_id": "j", "used_at": None})
    await store.refresh_tokens.find_one_and_update({"used_at": None}, {"$set": {"used_at": 1}})
    ops = [UpdateOne({"_id": "t1"}, {"$set": {"status": "placed"}}, upsert=True)]
    await store.trades.bulk_write(ops, ordered=False)
    before = {n: await store.db[n].find({}).sort("_id", 1).to_list() for n in ("users", "channels")}
    await store.close()

    reopened = durable_store(path)  # as a new process would: replay, then compact
    await reopened.ensure_indexes()
    for name, docs in before.items():
        assert await reopened.db[name].find({}).sort("_id", 1).to_list() == docs
    user = await reopened.users.find_one({"_id": "u1"})
    assert user is not None and user["display_name"] == "A"
    assert await reopened.users.count_documents({}) == 2
    assert (await reopened.refresh_tokens.find_one({"_id": "j"}) or {})["used_at"] == 1
    assert (await reopened.trades.find_one({"_id": "t1"}) or {})["status"] == "placed"
    await reopened.close()
    methods = {line.split('"m": "')[1].split('"')[0] for line in path.read_text().splitlines()}
    assert methods <= {"insert_many", "create_index"}  # compacted: documents and indexes only


async def test_embedded_store_unique_index_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "store.jsonl"
    store = durable_store(path)
    await store.ensure_indexes()
    await store.users.insert_one({"_id": new_id(), "email": "a@example.com"})
    await store.close()
    for _ in range(2):  # the compacted journal too
        reopened = durable_store(path)
        with pytest.raises(DuplicateKeyError):
            await reopened.users.insert_one({"_id": new_id(), "email": "a@example.com"})
        await reopened.close()


async def test_embedded_store_ignores_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "store.jsonl"
    store = durable_store(path)
    await store.users.insert_one({"_id": "u1", "email": "a@example.com"})
    await store.users.insert_one({"_id": "u2", "email": "b@example.com"})
    await store.close()
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) - 20])  # killed in the middle of the last write

    reopened = durable_store(path)
    assert [d["_id"] for d in await reopened.users.find({}).to_list()] == ["u1"]
    await reopened.users.insert_one({"_id": "u3", "email": "c@example.com"})
    await reopened.close()
    again = durable_store(path)
    assert [d["_id"] for d in await again.users.find({}).to_list()] == ["u1", "u3"]
    await again.close()


def set_op(_id: str, fields: dict[str, Any], upsert: bool = True) -> UpdateOne:
    return UpdateOne({"_id": _id}, {"$set": fields}, upsert=upsert)


async def test_bulk_set_by_id_inserts_new_ids_and_sets_only_the_given_fields(store: Store) -> None:
    await store.trades.insert_one({"_id": "old", "status": "placed", "stake": 10.0, "n": 1})
    ops = [set_op(f"t{i}", {"status": "placed", "n": i, "tags": ["a"], "x": {"y": i}})
           for i in range(5)]  # fmt: skip
    ops += [set_op("old", {"outcome": "won", "n": 1}), set_op("missing", {"n": 9}, upsert=False)]
    ops += [set_op("t0", {"n": 100}), set_op("old", {"n": 1})]  # the same id twice in one batch
    result = await store.trades.bulk_write(ops, ordered=False)

    assert result.upserted_count == 5
    assert result.upserted_ids == {i: f"t{i}" for i in range(5)}
    assert (result.matched_count, result.modified_count) == (3, 2)  # the last one changes nothing
    assert await store.trades.find_one({"_id": "old"}) == {
        "_id": "old", "status": "placed", "stake": 10.0, "n": 1, "outcome": "won"
    }  # fmt: skip
    assert await store.trades.find_one({"_id": "t0"}) == {
        "_id": "t0", "status": "placed", "n": 100, "tags": ["a"], "x": {"y": 0}
    }  # fmt: skip
    assert await store.trades.find_one({"_id": "missing"}) is None
    assert await store.trades.count_documents({}) == 6


async def test_bulk_set_by_id_matches_update_one(store: Store) -> None:
    """The same operations, one bulk_write or one update_one each, leave the same documents."""
    created = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    fields = [{"status": "placed", "created_at": created, "stake": 2.5, "reason": None,
               "payout": {"amount": 4.6, "at": [created]}, "tags": ("a", "b"), "n": i}
              for i in range(3)]  # fmt: skip
    ops = [set_op(f"t{i}", f) for i, f in enumerate(fields)]
    ops += [set_op("t1", {"outcome": "lost", "settled_at": created}), set_op("t2", {"n": 7})]
    bulk, single = store.db["bulk"], store.db["single"]
    await bulk.bulk_write(ops, ordered=True)
    for op in ops:
        await single.update_one(op._filter, op._doc, upsert=op._upsert)
    assert await bulk.find({}).sort("_id", 1).to_list() == (
        await single.find({}).sort("_id", 1).to_list()
    )
    fields[0]["payout"]["amount"] = 0  # the store holds its own copies
    assert (await bulk.find_one({"_id": "t0"}) or {})["payout"]["amount"] == 4.6


async def test_bulk_write_mixes_set_by_id_with_other_operations(store: Store) -> None:
    await store.trades.insert_many([{"_id": "a", "n": 1, "s": {"k": 1}}, {"_id": "b", "n": 1}])
    ops = [
        set_op("a", {"status": "placed"}),
        UpdateOne({"_id": "a"}, {"$inc": {"n": 1}}),
        set_op("c", {"n": 1}),
        UpdateOne({"_id": "b", "n": 1}, {"$set": {"status": "settled"}}),
        UpdateOne({"_id": "a"}, {"$set": {"s.k": 2}}),
        InsertOne({"_id": "d", "n": 4}),
        set_op("d", {"status": "placed"}),
        DeleteOne({"_id": "b"}),
        UpdateOne({"_id": "e"}, {"$set": {"n": 5}, "$setOnInsert": {"first": True}}, upsert=True),
        set_op("e", {"n": 6}),
    ]
    result = await store.trades.bulk_write(ops, ordered=True)
    assert (result.inserted_count, result.deleted_count, result.upserted_count) == (1, 1, 2)
    assert (result.matched_count, result.modified_count) == (6, 6)
    assert result.upserted_ids == {2: "c", 8: "e"}
    assert await store.trades.find({}).sort("_id", 1).to_list() == [
        {"_id": "a", "n": 2, "s": {"k": 2}, "status": "placed"},
        {"_id": "c", "n": 1},
        {"_id": "d", "n": 4, "status": "placed"},
        {"_id": "e", "n": 6, "first": True},
    ]
    with pytest.raises(InvalidDocument):  # a value BSON cannot hold, as MongoDB refuses it
        await store.trades.bulk_write([set_op("f", {"bad": {1, 2}})], ordered=False)
    assert await store.trades.find_one({"_id": "f"}) is None


async def test_embedded_store_replays_bulk_set_by_id(tmp_path: Path) -> None:
    path = tmp_path / "store.jsonl"
    store = durable_store(path)
    await store.ensure_indexes()
    created = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    ops = [set_op(f"t{i}", {"status": "placed", "created_at": created, "n": i}) for i in range(4)]
    await store.trades.bulk_write(ops, ordered=False)
    await store.trades.bulk_write(
        [
            set_op("t1", {"outcome": "won", "n": 10}),
            UpdateOne({"_id": "t2"}, {"$inc": {"n": 5}}),
            set_op("t2", {"outcome": "lost"}),
            set_op("gone", {"n": 1}, upsert=False),
            DeleteOne({"_id": "t3"}),
            set_op("t3", {"n": 3}),
        ],
        ordered=True,
    )
    before = await store.trades.find({}).sort("_id", 1).to_list()
    await store.close()
    assert '"set_by_id"' in path.read_text()

    for _ in range(2):  # the replayed journal, then the compacted one
        reopened = durable_store(path)
        assert await reopened.trades.find({}).sort("_id", 1).to_list() == before
        await reopened.close()
    assert [d["_id"] for d in before] == ["t0", "t1", "t2", "t3"]
    assert before[2]["n"] == 7 and before[3] == {"_id": "t3", "n": 3}
