"""An in-process stand-in for MongoDB with the async surface of PyMongo's ``AsyncCollection``.

Used when ``MONGODB_URL`` is unset (the demo, and tests on machines without a MongoDB server).
It wraps mongomock, which implements the query language, update operators, aggregation and unique
indexes; this module only gives it the awaitable method shapes that the store's code uses, so the
same store code runs on both. It lives inside one hub process: several hubs need a real MongoDB.

What it adds to plain mongomock:

- Durability (``EMBEDDED_STORE_PATH``): every applied write is appended to a journal of JSON lines
  (``bson.json_util``: collection, method, arguments) and flushed to the OS before the call
  returns; the encoding and the file writes run on a thread of the journal's own (one, so lines
  keep the order the writes were applied in), the event loop serves others meanwhile, so the data
  survives the process's death, ``kill -9`` included (not a power loss: there is no fsync). Opening
  replays the journal, ignoring a torn last line (the process died mid-write), then compacts it:
  the current documents and indexes, written to a temporary file that replaces the journal
  atomically. Writes are journaled in a replayable form: inserts carry their ``_id`` and an upsert
  that would create a document gets its ``_id`` chosen first, so a replay rebuilds the same
  documents.
- Lookups by ``_id``: mongomock scans the whole collection for every query, including
  ``{"_id": x}``; here such queries (the relay's trade and signal upserts among them) go straight
  to the document, so they stay cheap however many documents a collection holds.
- The relay's ``bulk_write``: runs of ``UpdateOne({"_id": id}, {"$set": fields})`` (plain field
  names, upsert or not) are applied to the stored documents directly and journaled as one
  ``set_by_id`` line per run, which replays the same way; mongomock's general path costs
  ~0.1-0.2 ms per such operation (a deep copy of the document, BSON checks per field). Any other
  operation goes through mongomock.
- Less per-document overhead in mongomock itself: documents read are copied without
  ``copy.copy`` on each value, and its PyMongo version checks are parsed once.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import json
import os
import types
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import bson
import mongomock
import mongomock.aggregate
import mongomock.collection
from bson import ObjectId, json_util
from bson.errors import BSONError
from mongomock.helpers import patch_datetime_awareness_in_document
from packaging import version
from pymongo import DeleteMany, DeleteOne, InsertOne, ReplaceOne, UpdateMany, UpdateOne
from pymongo.errors import BulkWriteError
from pymongo.results import BulkWriteResult

Entry = dict[str, Any]  # one journal line: {"c": collection, "m": method, "a": args, "k": kwargs}
COMPACT_CHUNK = 1000  # documents per insert_many line of a compacted journal
SET_BY_ID = "set_by_id"  # the journal's method for a run of $set-by-_id updates
SetById = tuple[Any, dict[str, Any], bool]  # (_id, fields to $set, upsert)
_STORED_AS_IS = {str, int, float, bool, type(None), ObjectId}  # what mongomock stores unchanged
_IMMUTABLE = _STORED_AS_IS | {datetime}  # what a copy of a document may share with the original
# Journal lines: datetimes as milliseconds (read back without parsing an ISO date).
_JOURNAL_JSON = json_util.JSONOptions(json_mode=json_util.JSONMode.LEGACY)


def _parse_versions_once() -> None:
    """mongomock compares PyMongo's version with ``packaging.version.parse("x.y")`` inline, per
    inserted or read document and per updated field (~1 µs each, 5% of the relay's time in a
    profile); the parse is pure, so its results are kept."""
    cached = types.SimpleNamespace(parse=functools.cache(version.parse))
    for module in (mongomock.collection, mongomock.aggregate):
        if getattr(module, "version", None) is version:
            module.version = cached  # type: ignore[attr-defined]


_parse_versions_once()


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

    def _results(self) -> list[dict[str, Any]]:
        """Every result at once: stepping a mongomock cursor copies its whole result list at
        each step (quadratic: 17 s for 100,000 documents), taking them in one go does not."""
        if isinstance(self._cursor, list):  # an aggregation's results
            return list(self._cursor)
        results: list[dict[str, Any]] = self._cursor._compute_results(with_limit_and_skip=True)
        return list(results)

    async def to_list(self, length: int | None = None) -> list[dict[str, Any]]:
        docs = self._results()
        return docs if length is None else docs[:length]

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        for doc in self._results():
            yield doc


def _entry(collection: str, method: str, *args: Any, **kwargs: Any) -> Entry:
    return {"c": collection, "m": method, "a": list(args), "k": kwargs}


def _json_line(entry: Entry) -> str:
    """``entry`` as Extended JSON. ``json_util.dumps`` walks the whole value in Python first;
    here the C encoder does, handing json_util only what JSON has no type for."""
    return json.dumps(
        entry, default=functools.partial(json_util.default, json_options=_JOURNAL_JSON)
    )


def _with_id_lookup(collection: Any) -> Any:
    """Make ``collection`` answer ``{"_id": <str or ObjectId>}`` queries without a scan."""
    scan = collection._iter_documents

    def iter_documents(filter: Any) -> Iterator[dict[str, Any]]:
        if isinstance(filter, dict) and len(filter) == 1:
            _id = filter.get("_id")
            if isinstance(_id, str | ObjectId):
                store = collection._store
                return iter([store[_id]] if _id in store else [])
        return iter(scan(filter))

    collection._iter_documents = iter_documents
    return collection


def _with_quick_copies(collection: Any) -> Any:
    """Make ``collection`` copy the documents it returns without ``copy.copy`` on each value.

    mongomock copies every document a query returns (so that callers cannot change the stored
    one) by calling ``copy.copy`` on each value, strings and numbers included: 10 µs a document,
    most of reading 200,000 documents when the hub rebuilds its directory. Values that cannot
    change are shared instead; projections, and anything but plain dicts and lists, still go
    through mongomock.
    """
    copy_only_fields = collection._copy_only_fields

    def copy(value: Any) -> Any:
        if type(value) is dict:
            return {k: v if type(v) in _IMMUTABLE else copy(v) for k, v in value.items()}
        if type(value) is list:
            return [v if type(v) in _IMMUTABLE else copy(v) for v in value]
        return mongomock.collection._copy_field(value, dict)

    def quick_copy_only_fields(doc: Any, fields: Any, container: Any) -> Any:
        if fields or container is not dict:
            return copy_only_fields(doc, fields, container)
        return copy(doc)

    collection._copy_only_fields = quick_copy_only_fields
    return collection


def _set_by_id(op: Any) -> SetById | None:
    """``op`` as (_id, fields, upsert) if it is ``UpdateOne({"_id": id}, {"$set": fields})``
    with plain field names (no dots, no operators, not ``_id``) and no other option."""
    if type(op) is not UpdateOne or op._collation or op._array_filters or op._hint or op._sort:
        return None
    filter, update = op._filter, op._doc
    if type(filter) is not dict or len(filter) != 1 or type(update) is not dict or len(update) != 1:
        return None
    _id, fields = filter.get("_id"), update.get("$set")
    if type(_id) not in (str, ObjectId) or type(fields) is not dict or not fields:
        return None
    for key in fields:
        if type(key) is not str or key == "_id" or key[:1] == "$" or "." in key or "\0" in key:
            return None
    return _id, fields, bool(op._upsert)


def _encodable(sets: list[SetById]) -> bool:
    """Would MongoDB accept every value? Checked before any is applied, so that a run
    applies whole or goes to mongomock's path, which fails at the right operation."""
    try:
        bson.encode({"sets": [fields for _, fields, _ in sets]})
    except (BSONError, TypeError, ValueError, OverflowError):
        return False
    return True


def _apply_sets(collection: Any, sets: list[SetById]) -> tuple[int, int, list[int]]:
    """Apply (_id, fields, upsert) updates in order, to mongomock's stored documents, as its
    ``update_one`` would (datetimes made naive UTC and cut to milliseconds, containers copied).
    Returns the operations matched and modified, and the positions of those that inserted."""
    store = collection._store
    matched, modified, upserted = 0, 0, []
    with store._rwlock.writer():
        documents = store._documents
        for position, (_id, fields, upsert) in enumerate(sets):
            fields = {
                k: v if type(v) in _STORED_AS_IS else patch_datetime_awareness_in_document(v)
                for k, v in fields.items()
            }
            doc = documents.get(_id)
            if doc is not None:
                matched += 1
                if any(k not in doc or doc[k] != v for k, v in fields.items()):
                    doc.update(fields)
                    modified += 1
            elif upsert:
                documents[_id] = {"_id": _id, **fields}
                upserted.append(position)
    return matched, modified, upserted


class EmbeddedCollection:
    def __init__(self, collection: Any, name: str, db: EmbeddedDatabase) -> None:
        self._c = _with_quick_copies(_with_id_lookup(collection))
        self._name = name
        self._db = db

    async def _record(self, entries: list[Entry]) -> None:
        if entries:
            await self._db.record(entries)

    def _pinned(self, filter: Mapping[str, Any], upsert: bool) -> dict[str, Any]:
        """The filter, with the ``_id`` an upsert would create chosen now, so a replay agrees."""
        filter = dict(filter)
        if (
            upsert
            and self._db.durable
            and "_id" not in filter
            and self._c.find_one(filter, {"_id": 1}) is None
        ):
            filter["_id"] = ObjectId()
        return filter

    async def insert_one(self, doc: Mapping[str, Any]) -> Any:
        doc = {"_id": ObjectId(), **doc} if "_id" not in doc else dict(doc)
        result = self._c.insert_one(doc)
        await self._record([_entry(self._name, "insert_one", doc)])
        return result

    async def insert_many(self, docs: Iterable[Mapping[str, Any]], ordered: bool = True) -> Any:
        copies = [{"_id": ObjectId(), **d} if "_id" not in d else dict(d) for d in docs]
        try:
            result = self._c.insert_many(copies, ordered=ordered)
        except BulkWriteError as exc:
            failed = {e["index"] for e in exc.details.get("writeErrors", [])}
            last = exc.details.get("nInserted", 0) if ordered else len(copies)
            inserted = [d for i, d in enumerate(copies[:last]) if i not in failed]
            await self._record([_entry(self._name, "insert_many", inserted)] if inserted else [])
            raise
        await self._record([_entry(self._name, "insert_many", copies)])
        return result

    async def find_one(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self._c.find_one(*args, **kwargs)
        return result

    def find(self, *args: Any, **kwargs: Any) -> EmbeddedCursor:
        return EmbeddedCursor(self._c.find(*args, **kwargs))

    async def _update(self, method: str, filter: Any, doc: Any, upsert: bool) -> Any:
        """update_one, update_many or replace_one, journaled when it changed anything."""
        filter = self._pinned(filter, upsert)
        result = getattr(self._c, method)(filter, doc, upsert=upsert)
        if result.matched_count or result.upserted_id is not None:
            await self._record([_entry(self._name, method, filter, doc, upsert=upsert)])
        return result

    async def update_one(self, filter: Any, update: Any, upsert: bool = False) -> Any:
        return await self._update("update_one", filter, update, upsert)

    async def update_many(self, filter: Any, update: Any, upsert: bool = False) -> Any:
        return await self._update("update_many", filter, update, upsert)

    async def replace_one(self, filter: Any, doc: Any, upsert: bool = False) -> Any:
        return await self._update("replace_one", filter, doc, upsert)

    async def find_one_and_update(
        self, filter: Any, update: Any, *args: Any, **kwargs: Any
    ) -> dict[str, Any] | None:
        """Journaled as the ``update_one`` of the document it hit, so the replay hits it too."""
        upsert = bool(kwargs.get("upsert"))
        filter = self._pinned(filter, upsert)
        target = None
        if self._db.durable:
            target = self._c.find_one(filter, {"_id": 1}, sort=kwargs.get("sort"))
        result: dict[str, Any] | None = self._c.find_one_and_update(filter, update, *args, **kwargs)
        if target is not None:
            await self._record([_entry(self._name, "update_one", {"_id": target["_id"]}, update)])
        elif upsert and self._db.durable:
            await self._record([_entry(self._name, "update_one", filter, update, upsert=True)])
        return result

    async def delete_one(self, filter: Any) -> Any:
        result = self._c.delete_one(filter)
        if result.deleted_count:
            await self._record([_entry(self._name, "delete_one", filter)])
        return result

    async def delete_many(self, filter: Any) -> Any:
        result = self._c.delete_many(filter)
        if result.deleted_count:
            await self._record([_entry(self._name, "delete_many", filter)])
        return result

    async def count_documents(self, *args: Any, **kwargs: Any) -> int:
        return int(self._c.count_documents(*args, **kwargs))

    async def aggregate(self, pipeline: list[dict[str, Any]]) -> EmbeddedCursor:
        return EmbeddedCursor(list(self._c.aggregate(pipeline)))

    async def create_index(self, keys: Any, **kwargs: Any) -> str:
        kwargs.pop("expireAfterSeconds", None)  # the embedded store does not expire documents
        name = str(self._c.create_index(keys, **kwargs))
        await self._record([_entry(self._name, "create_index", keys, **kwargs)])
        return name

    def _set_run(self, requests: list[Any], start: int) -> list[SetById]:
        """The $set-by-_id operations from ``start`` on, up to the first other one; none when a
        unique index other than ``_id``'s would have to be checked."""
        if any(index.get("unique") for index in self._c._store.indexes.values()):
            return []
        run: list[SetById] = []
        for position in range(start, len(requests)):
            parsed = _set_by_id(requests[position])
            if parsed is None:
                break
            run.append(parsed)
        return run

    async def bulk_write(self, requests: list[Any], ordered: bool = True) -> BulkWriteResult:
        """Apply each request in turn; the journal gets one line per applied operation, or one
        per run of $set-by-_id updates (see :func:`_apply_sets`), which go straight to the
        documents. A run with a value BSON cannot hold goes through mongomock, operation by
        operation, to fail where MongoDB would.

        mongomock's own ``bulk_write`` does not accept the operation objects of current PyMongo,
        so the operations are unpacked here (their fields are read from PyMongo's own attributes).
        """
        upserted: dict[int, Any] = {}
        counts = {"nInserted": 0, "nMatched": 0, "nModified": 0, "nRemoved": 0, "nUpserted": 0}
        entries: list[Entry] = []
        index = 0
        try:
            while index < len(requests):
                run = self._set_run(requests, index)
                if run and _encodable(run):
                    matched, modified, inserted = _apply_sets(self._c, run)
                    entries.append(_entry(self._name, SET_BY_ID, [list(s) for s in run]))
                    counts["nMatched"] += matched
                    counts["nModified"] += modified
                    counts["nUpserted"] += len(inserted)
                    upserted.update((index + i, run[i][0]) for i in inserted)
                    index += len(run)
                    continue
                for op in requests[index : index + max(len(run), 1)]:
                    self._apply(op, index, counts, upserted, entries)
                    index += 1
        finally:
            await self._record(entries)
        raw = dict(counts, upserted=[{"index": i, "_id": _id} for i, _id in upserted.items()])
        return BulkWriteResult(raw, acknowledged=True)

    def _apply(
        self,
        op: Any,
        index: int,
        counts: dict[str, int],
        upserted: dict[int, Any],
        entries: list[Entry],
    ) -> None:
        """One operation of a ``bulk_write`` through mongomock, added to its counts and journal."""
        if isinstance(op, InsertOne):
            doc = {"_id": ObjectId(), **op._doc} if "_id" not in op._doc else dict(op._doc)
            self._c.insert_one(doc)
            entries.append(_entry(self._name, "insert_one", doc))
            counts["nInserted"] += 1
        elif isinstance(op, UpdateOne | UpdateMany | ReplaceOne):
            method = {UpdateOne: "update_one", UpdateMany: "update_many"}.get(
                type(op), "replace_one"
            )
            upsert = bool(op._upsert)
            filter = self._pinned(op._filter, upsert)
            result = getattr(self._c, method)(filter, op._doc, upsert=upsert)
            if result.matched_count or result.upserted_id is not None:
                entries.append(_entry(self._name, method, filter, op._doc, upsert=upsert))
            counts["nMatched"] += result.matched_count
            counts["nModified"] += result.modified_count
            if result.upserted_id is not None:
                upserted[index] = result.upserted_id
                counts["nUpserted"] += 1
        elif isinstance(op, DeleteOne | DeleteMany):
            method = "delete_one" if isinstance(op, DeleteOne) else "delete_many"
            removed = getattr(self._c, method)(op._filter).deleted_count
            if removed:
                entries.append(_entry(self._name, method, op._filter))
            counts["nRemoved"] += removed
        else:
            raise TypeError(f"unsupported bulk operation {type(op).__name__}")


class Journal:
    """The append-only file of an embedded database's writes: read, append, compact."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._file: TextIO | None = None

    def read(self) -> Iterator[Entry]:
        """Every entry in order. A last line that does not parse was torn by a dying process
        and is dropped; a bad line before the last one is corruption, and an error."""
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8") as file:
            lines = file.read().split("\n")
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                entry: Entry = json_util.loads(line)
            except ValueError:
                if number == len(lines):
                    return
                raise ValueError(f"{self.path}:{number}: corrupt journal line") from None
            yield entry

    def append(self, entries: list[Entry]) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        self._file.write("".join(_json_line(e) + "\n" for e in entries))
        self._file.flush()

    def rewrite(self, entries: Iterable[Entry]) -> None:
        """Replace the journal by ``entries``, atomically (temporary file, then ``os.replace``)."""
        self.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        with temporary.open("w", encoding="utf-8") as file:
            for entry in entries:
                file.write(_json_line(entry) + "\n")
        os.replace(temporary, self.path)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


# Journal lines that add to the database without changing what is there: a journal made of
# nothing else (a freshly compacted or seeded one) is already compact.
_ADDING = {"insert_one", "insert_many", "create_index"}


class StoreInUse(RuntimeError):
    """Another process has this journal open (a running hub): a second writer would be lost at
    the first compaction."""


def _lock(path: Path) -> TextIO:
    """An exclusive lock on ``<journal>.lock`` for the life of the database."""
    path.parent.mkdir(parents=True, exist_ok=True)
    holder = path.with_name(path.name + ".lock").open("a", encoding="utf-8")
    try:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder.close()
        raise StoreInUse(f"the embedded store {path} is open in another process") from None
    return holder


class EmbeddedDatabase:
    def __init__(self, name: str = "embedded", path: str | os.PathLike[str] | None = None) -> None:
        self._db: Any = mongomock.MongoClient().get_database(name)
        self._collections: dict[str, EmbeddedCollection] = {}
        self._indexes: dict[str, dict[str, Entry]] = {}  # collection -> index entries by text
        self._lock = _lock(Path(path)) if path else None
        self._journal = Journal(path) if path else None
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        if self._journal is not None:
            compact = True
            for entry in self._journal.read():
                self._replay(entry)
                compact = compact and entry["m"] in _ADDING
            if not compact or self._torn(self._journal.path):
                self._journal.rewrite(self._snapshot())

    @property
    def durable(self) -> bool:
        return self._journal is not None

    def __getitem__(self, name: str) -> EmbeddedCollection:
        if name not in self._collections:
            self._collections[name] = EmbeddedCollection(self._db[name], name, self)
        return self._collections[name]

    async def command(self, name: str) -> dict[str, Any]:
        return {"ok": 1.0}

    async def record(self, entries: list[Entry]) -> None:
        """Journal writes that were applied, returning once they reached the OS; remember index
        creations for compaction. Awaited right after applying them: the journal's one thread
        takes them (synchronously, before this waits) in the order they were applied."""
        for entry in entries:
            if entry["m"] == "create_index":
                self._indexes.setdefault(entry["c"], {})[json_util.dumps(entry)] = entry
        if self._journal is not None:
            await asyncio.wrap_future(self._writer.submit(self._journal.append, entries))

    def _replay(self, entry: Entry) -> None:
        collection = self[entry["c"]]._c
        args, kwargs = list(entry["a"]), dict(entry.get("k") or {})
        if entry["m"] == "create_index":
            keys = args[0]
            args[0] = keys if isinstance(keys, str) else [tuple(k) for k in keys]
            self._indexes.setdefault(entry["c"], {})[json_util.dumps(entry)] = entry
        if entry["m"] == SET_BY_ID:
            _apply_sets(collection, [(_id, fields, upsert) for _id, fields, upsert in args[0]])
            return
        method: Callable[..., Any] = getattr(collection, entry["m"])
        method(*args, **kwargs)

    @staticmethod
    def _torn(path: Path) -> bool:
        """Does the file end without a newline (a write cut short)?"""
        if not path.exists() or path.stat().st_size == 0:
            return False
        with path.open("rb") as file:
            file.seek(-1, os.SEEK_END)
            return file.read(1) != b"\n"

    def _snapshot(self) -> Iterator[Entry]:
        """The database as journal entries: each collection's documents, then its indexes."""
        for name in sorted(self._db.list_collection_names()):
            batch: list[dict[str, Any]] = []
            for doc in EmbeddedCursor(self._db[name].find({}))._results():
                batch.append(doc)
                if len(batch) == COMPACT_CHUNK:
                    yield _entry(name, "insert_many", batch)
                    batch = []
            if batch:
                yield _entry(name, "insert_many", batch)
        for indexes in self._indexes.values():
            yield from indexes.values()

    def close(self) -> None:
        self._writer.shutdown(wait=True)  # what was awaited is written; nothing is dropped
        if self._journal is not None:
            self._journal.close()
        if self._lock is not None:
            self._lock.close()  # releases the lock
            self._lock = None
