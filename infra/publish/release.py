"""One release, in the order that keeps the site whole at every instant.

1. the files under ``assets/``: new names that nothing serves yet;
2. the other files (favicon, fonts of ``public/``);
3. the release's manifest, ``_releases/<id>.json``: its keys and their hashes;
4. ``config.json``, then 5. ``index.html``, the switch from the old release to the new one;
6. the invalidation of ``/index.html``, ``/`` and ``/config.json``;
7. the pointer, ``_releases/current.json``: which release is current and which one came before;
8. the removal of every object of ours that belongs to neither of those two releases;
9. the wait for the invalidation.

A failure before step 5 leaves the previous ``index.html`` serving, and every chunk it names is
still there; a failure after it leaves the new release whole. Either way a re-run skips what is
already stored (same hash, same headers) and completes the rest: the pointer is written only
after the invalidation, so a run that stopped before it is redone to the end.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TextIO, TypeVar

from infra.publish.errors import AwsError
from infra.publish.remote import Bucket, Distribution, StoredObject
from infra.publish.site import (
    ASSETS,
    CONFIG,
    INDEX,
    REVALIDATE,
    SiteFile,
    release_id,
)

RELEASES = "_releases/"
POINTER = RELEASES + "current.json"
INVALIDATED = ("/index.html", "/", "/config.json")
"""Only the names that stay the same from one release to the next; everything under ``assets/``
has a new name when its content changes, so it never needs invalidating."""

_RELEASE_ID = re.compile(r"[0-9a-f]{16}")

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Options:
    dry_run: bool = False
    wait: bool = True
    jobs: int = 8
    progress_every_s: float = 2.0


@dataclass(frozen=True)
class Pointer:
    """The bucket's record of the live release and the one before it (kept for open tabs)."""

    current: str | None = None
    previous: str | None = None

    def after(self, release: str) -> Pointer:
        if self.current == release:
            return self
        return Pointer(current=release, previous=self.current)


@dataclass
class Plan:
    """What a run will do, worked out by reading the bucket only (all a dry run does)."""

    release: str
    live: Pointer
    files: list[SiteFile]
    upload: list[SiteFile]
    unchanged: list[SiteFile]
    manifest: SiteFile
    write_manifest: bool
    remove: list[str]
    foreign: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def after(self) -> Pointer:
        return self.live.after(self.release)

    @property
    def invalidate(self) -> bool:
        return bool(self.upload) or self.live.current != self.release

    @property
    def upload_bytes(self) -> int:
        return sum(file.size for file in self.upload)


@dataclass
class Report:
    plan: Plan
    invalidation: str | None = None


def manifest_key(release: str) -> str:
    return f"{RELEASES}{release}.json"


def _json_file(key: str, data: object) -> SiteFile:
    body = json.dumps(data, indent=1, sort_keys=True).encode() + b"\n"
    return SiteFile(key, body, "application/json", REVALIDATE)


def manifest_file(release: str, files: Iterable[SiteFile]) -> SiteFile:
    """The release's list of keys, deterministic so that a re-run finds it already stored."""
    listing = {file.key: file.sha256 for file in files}
    return _json_file(manifest_key(release), {"release": release, "files": listing})


def pointer_file(pointer: Pointer) -> SiteFile:
    return _json_file(POINTER, {"current": pointer.current, "previous": pointer.previous})


def _release_or_none(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _RELEASE_ID.fullmatch(value):
        raise AwsError(f"{where} names no release ({value!r}): delete it or fix it")
    return value


def read_pointer(bucket: Bucket) -> Pointer:
    data = bucket.get_json(POINTER)
    if data is None:
        return Pointer()
    where = f"s3://{bucket.name}/{POINTER}"
    if not isinstance(data, dict):
        raise AwsError(f"{where} is not a release pointer: delete it or fix it")
    return Pointer(
        current=_release_or_none(data.get("current"), where),
        previous=_release_or_none(data.get("previous"), where),
    )


def read_manifest(bucket: Bucket, release: str) -> set[str] | None:
    """The keys of ``release``, or None when its manifest is gone."""
    data = bucket.get_json(manifest_key(release))
    if data is None:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        raise AwsError(f"s3://{bucket.name}/{manifest_key(release)} is not a release manifest")
    return set(data["files"])


def phase(file: SiteFile) -> int:
    """When ``file`` goes up: 0 assets, 1 the other files, 2 ``config.json``, 3 ``index.html``."""
    if file.key.startswith(ASSETS):
        return 0
    return {CONFIG: 2, INDEX: 3}.get(file.key, 1)


def upload_order(files: Iterable[SiteFile]) -> list[SiteFile]:
    return sorted(files, key=lambda file: (phase(file), file.key))


def _parallel(
    items: Sequence[T],
    action: Callable[[T], R],
    jobs: int,
    done: Callable[[T, R], None] = lambda item, result: None,
) -> list[R]:
    """``action`` over ``items`` on ``jobs`` threads; the first error stops the others."""
    results: dict[int, R] = {}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(action, item): index for index, item in enumerate(items)}
        try:
            for future in as_completed(futures):
                index = futures[future]
                results[index] = future.result()
                done(items[index], results[index])
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return [results[index] for index in range(len(items))]


def plan_release(files: list[SiteFile], bucket: Bucket, jobs: int) -> Plan:
    """Compare the release with the bucket: what to upload, what to keep, what to remove."""
    release = release_id(files)
    live = read_pointer(bucket)
    listed = set(bucket.keys())
    manifest = manifest_file(release, files)

    present = [file for file in [*files, manifest] if file.key in listed]
    heads = _parallel([file.key for file in present], bucket.head, jobs)
    stored = dict(zip((file.key for file in present), heads, strict=True))

    def already_there(file: SiteFile) -> bool:
        found = stored.get(file.key)
        return found is not None and found.matches(file)

    notes = [
        f"{file.key} changed content under the same name: browsers keep the old one for a year "
        "(is its name content-hashed?)"
        for file in present
        if phase(file) == 0
        and (found := stored[file.key])
        and found.sha256 not in {None, file.sha256}
    ]
    after = live.after(release)
    keep = {file.key for file in files} | {manifest.key, POINTER}
    removable = True
    if after.previous is not None:
        previous = read_manifest(bucket, after.previous)
        if previous is None:
            notes.append(f"the manifest of release {after.previous} is missing: nothing removed")
            removable = False
        else:
            keep |= previous | {manifest_key(after.previous)}

    candidates = sorted(listed - keep) if removable else []
    owners: list[StoredObject | None] = _parallel(candidates, bucket.head, jobs)
    ours = [key for key, head in zip(candidates, owners, strict=True) if head and head.sha256]
    return Plan(
        release=release,
        live=live,
        files=files,
        upload=upload_order(file for file in files if not already_there(file)),
        unchanged=[file for file in files if already_there(file)],
        manifest=manifest,
        write_manifest=not already_there(manifest),
        remove=ours,
        foreign=[key for key in candidates if key not in set(ours)],
        notes=notes,
    )


def _size(size: int) -> str:
    if size < 1000:
        return f"{size} B"
    if size < 1_000_000:
        return f"{size / 1000:.1f} kB"
    return f"{size / 1_000_000:.1f} MB"


class _Progress:
    """A line every few seconds while files go up, so a long upload is visibly moving."""

    def __init__(self, out: TextIO, files: int, size: int, every_s: float) -> None:
        self.out, self.files, self.size, self.every_s = out, files, size, every_s
        self.done_files = self.done_size = 0
        self.last = time.monotonic()

    def advance(self, file: SiteFile, _: None) -> None:
        self.done_files += 1
        self.done_size += file.size
        now = time.monotonic()
        if now - self.last >= self.every_s and self.done_files < self.files:
            self.last = now
            print(
                f"  {self.done_files}/{self.files} files, "
                f"{_size(self.done_size)} of {_size(self.size)}",
                file=self.out,
                flush=True,
            )


def _upload(plan: Plan, bucket: Bucket, options: Options, out: TextIO) -> None:
    progress = _Progress(out, len(plan.upload), plan.upload_bytes, options.progress_every_s)
    for number in (0, 1):
        batch = [file for file in plan.upload if phase(file) == number]
        _parallel(batch, bucket.put, options.jobs, progress.advance)
    if plan.write_manifest:
        bucket.put(plan.manifest)
    for file in plan.upload:
        if phase(file) >= 2:
            bucket.put(file)
            progress.advance(file, None)


def _describe(plan: Plan, out: TextIO) -> None:
    say = partial(print, file=out, flush=True)
    config = next((file for file in plan.files if file.key == CONFIG), None)
    if config is not None:
        say(f"config.json: {config.body.decode().strip()}")
    for note in plan.notes:
        say(f"note: {note}")
    if plan.foreign:
        shown = ", ".join(plan.foreign[:5]) + (", ..." if len(plan.foreign) > 5 else "")
        say(f"left alone: {len(plan.foreign)} objects this command did not write ({shown})")


def _describe_dry_run(plan: Plan, out: TextIO) -> None:
    say = partial(print, file=out, flush=True)
    for file in plan.upload:
        say(
            f"  would upload {file.key} ({_size(file.size)}, {file.content_type}, "
            f"{file.cache_control})"
        )
    for key in plan.remove:
        say(f"  would remove {key}")
    say(
        f"would upload {len(plan.upload)} ({_size(plan.upload_bytes)}), "
        f"leave {len(plan.unchanged)} unchanged, remove {len(plan.remove)}"
    )
    if plan.invalidate:
        say(f"would invalidate {', '.join(INVALIDATED)}")
    if plan.after != plan.live:
        say(f"would record release {plan.release} as live, {plan.after.previous} as previous")
    say("dry run: nothing was changed")


def publish(
    files: list[SiteFile],
    bucket: Bucket,
    distribution: Distribution,
    options: Options,
    out: TextIO,
) -> Report:
    """Publish ``files`` as a release: steps in the module's docstring, one line each on ``out``."""
    say = partial(print, file=out, flush=True)
    bucket.check()
    domain = distribution.check()
    plan = plan_release(files, bucket, options.jobs)
    size = sum(file.size for file in files)
    say(f"release {plan.release}: {len(files)} files, {_size(size)}")
    say(
        f"to s3://{bucket.name} behind {distribution.id} ({domain}); "
        f"live release: {plan.live.current or 'none'}"
    )
    _describe(plan, out)
    report = Report(plan)
    if options.dry_run:
        _describe_dry_run(plan, out)
        return report

    if plan.upload:
        assets = sum(1 for file in plan.upload if file.key.startswith(ASSETS))
        last = f", {INDEX} last" if any(file.key == INDEX for file in plan.upload) else ""
        say(
            f"uploading {len(plan.upload)} files ({_size(plan.upload_bytes)}): "
            f"{assets} under {ASSETS} first{last}"
        )
    _upload(plan, bucket, options, out)
    if plan.invalidate:
        report.invalidation = distribution.invalidate(
            INVALIDATED, f"{plan.release}-{time.time_ns()}"
        )
    if plan.after != plan.live:
        bucket.put(pointer_file(plan.after))
    bucket.delete(plan.remove)
    say(
        f"uploaded {len(plan.upload)} ({_size(plan.upload_bytes)}), "
        f"unchanged {len(plan.unchanged)}, removed {len(plan.remove)}"
    )
    if report.invalidation is None:
        say(f"release {plan.release} was already live: nothing to invalidate")
        return report
    paths = ", ".join(INVALIDATED)
    if options.wait:
        started = time.monotonic()
        say(f"invalidation {report.invalidation} of {paths}: waiting for it")
        distribution.wait(report.invalidation)
        say(f"invalidation {report.invalidation} completed in {time.monotonic() - started:.0f} s")
    else:
        say(f"invalidation {report.invalidation} of {paths}: started, not waited for")
    say(f"release {plan.release} is live; kept for open tabs: {plan.after.previous or 'none'}")
    return report
