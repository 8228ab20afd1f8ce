"""An in-process stand-in for MongoDB with the async surface of PyMongo's ``AsyncCollection``.

Used when ``MONGODB_URL`` is unset (the demo, and tests on machines without a MongoDB server).
It wraps mongomock, which implements the query language, update operators, aggregation and unique
indexes; this module only gives it the awaitable method shapes that the store's code uses, so the
same store code runs on both. It lives inside one hub process: several hubs need a real MongoDB.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import mongomock
from pymongo import DeleteMany, DeleteOne, InsertOne, ReplaceOne, UpdateMany, UpdateOne
from pymongo.results import BulkWriteResult


class EmbeddedCursor:
    """The chainable part of ``AsyncCursor``: sort, skip, limit, then ``to_list``/``async for``."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def sort(self, key: Any, direction: int | None = None) -> EmbeddedCursor:
        self._cursor = (
            self._cursor.sort(key) if direction is None else self._cursor.sort(key, direction)
        )
        return self

    def skip(self, n: int) -> EmbeddedCursor:
        self._cursor = self._cursor.skip(n)
        return self

    def limit(self, n: int) -> EmbeddedCursor:
        self._cursor = self._cursor.limit(n)
        return self

    async def to_list(self, length: int | None = None) -> list[dict[str, Any]]:
        docs = list(self._cursor)
        return docs if length is None else docs[:length]

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        for doc in self._cursor:
            yield doc


class EmbeddedCollection:
    def __init__(self, collection: Any) -> None:
        self._c = collection

    async def insert_one(self, doc: Mapping[str, Any]) -> Any:
        return self._c.insert_one(dict(doc))

    async def insert_many(self, docs: Iterable[Mapping[str, Any]], ordered: bool = True) -> Any:
        return self._c.insert_many([dict(d) for d in docs], ordered=ordered)

    async def find_one(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self._c.find_one(*args, **kwargs)
        return result

    def find(self, *args: Any, **kwargs: Any) -> EmbeddedCursor:
        return EmbeddedCursor(self._c.find(*args, **kwargs))

    async def update_one(self, *args: Any, **kwargs: Any) -> Any:
        return self._c.update_one(*args, **kwargs)

    async def update_many(self, *args: Any, **kwargs: Any) -> Any:
        return self._c.update_many(*args, **kwargs)

    async def replace_one(self, *args: Any, **kwargs: Any) -> Any:
        return self._c.replace_one(*args, **kwargs)

    async def find_one_and_update(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self._c.find_one_and_update(*args, **kwargs)
        return result

    async def delete_one(self, *args: Any, **kwargs: Any) -> Any:
        return self._c.delete_one(*args, **kwargs)

    async def delete_many(self, *args: Any, **kwargs: Any) -> Any:
        return self._c.delete_many(*args, **kwargs)

    async def count_documents(self, *args: Any, **kwargs: Any) -> int:
        return int(self._c.count_documents(*args, **kwargs))

    async def aggregate(self, pipeline: list[dict[str, Any]]) -> EmbeddedCursor:
        return EmbeddedCursor(iter(list(self._c.aggregate(pipeline))))

    async def create_index(self, keys: Any, **kwargs: Any) -> str:
        kwargs.pop("expireAfterSeconds", None)  # the embedded store does not expire documents
        return str(self._c.create_index(keys, **kwargs))

    async def bulk_write(self, requests: list[Any], ordered: bool = True) -> BulkWriteResult:
        """Apply each request in turn.

        mongomock's own ``bulk_write`` does not accept the operation objects of current PyMongo,
        so the operations are unpacked here (their fields are read from PyMongo's own attributes).
        """
        upserted: dict[int, Any] = {}
        counts = {"nInserted": 0, "nMatched": 0, "nModified": 0, "nRemoved": 0, "nUpserted": 0}
        for index, op in enumerate(requests):
            if isinstance(op, InsertOne):
                self._c.insert_one(dict(op._doc))
                counts["nInserted"] += 1
            elif isinstance(op, UpdateOne | UpdateMany | ReplaceOne):
                if isinstance(op, ReplaceOne):
                    result = self._c.replace_one(op._filter, op._doc, upsert=bool(op._upsert))
                elif isinstance(op, UpdateOne):
                    result = self._c.update_one(op._filter, op._doc, upsert=bool(op._upsert))
                else:
                    result = self._c.update_many(op._filter, op._doc, upsert=bool(op._upsert))
                counts["nMatched"] += result.matched_count
                counts["nModified"] += result.modified_count
                if result.upserted_id is not None:
                    upserted[index] = result.upserted_id
                    counts["nUpserted"] += 1
            elif isinstance(op, DeleteOne | DeleteMany):
                delete = self._c.delete_one if isinstance(op, DeleteOne) else self._c.delete_many
                counts["nRemoved"] += delete(op._filter).deleted_count
            else:
                raise TypeError(f"unsupported bulk operation {type(op).__name__}")
        raw = dict(counts, upserted=[{"index": i, "_id": _id} for i, _id in upserted.items()])
        return BulkWriteResult(raw, acknowledged=True)


class EmbeddedDatabase:
    def __init__(self, name: str = "embedded") -> None:
        self._db: Any = mongomock.MongoClient().get_database(name)
        self._collections: dict[str, EmbeddedCollection] = {}

    def __getitem__(self, name: str) -> EmbeddedCollection:
        if name not in self._collections:
            self._collections[name] = EmbeddedCollection(self._db[name])
        return self._collections[name]

    async def command(self, name: str) -> dict[str, Any]:
        return {"ok": 1.0}
