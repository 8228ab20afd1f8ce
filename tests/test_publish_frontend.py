"""``python -m infra.publish_frontend`` against moto's S3 and CloudFront (a server on a local port,
reached through ``--endpoint-url``, as an operator would reach an S3-compatible endpoint).

The app is a synthetic Vite build (index.html, config.json, hashed assets, fonts, icons: more than
100 files) so that no npm is needed; moto's S3 is set to list 100 keys a page, so that a listing
that forgot the paginator shows up as files uploaded again or never removed.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError
from moto.server import ThreadedMotoServer

from infra import publish_frontend
from infra.publish.build import build_reason, ensure_built
from infra.publish.errors import BuildError, ConfigError
from infra.publish.release import Options, publish
from infra.publish.remote import Bucket, Distribution
from infra.publish.site import read_site, runtime_config

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "ctc-site"
IMMUTABLE = "public, max-age=31536000, immutable"
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml; charset=utf-8",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
    ".ico": "image/x-icon",
    ".png": "image/png",
    ".woff2": "font/woff2",
}
CHUNKS = 120
CHANGING = 10  # the first chunks change from one version to the next; the others do not


# ---- the synthetic build ---------------------------------------------------------------------


def hashed(name: str, ext: str, body: bytes) -> str:
    return f"assets/{name}-{hashlib.sha256(body).hexdigest()[:8]}{ext}"


def make_dist(root: Path, version: int) -> dict[str, bytes]:
    """Write a Vite-like build of ``version`` under ``root``; returns its files by key."""
    files: dict[str, bytes] = {}
    for i in range(CHUNKS):
        body = f"export const chunk{i} = {version if i < CHANGING else 0};\n".encode()
        files[hashed(f"chunk{i}", ".js", body)] = body
    entry = f"import './chunks'; console.log('v{version}');\n".encode()
    entry_key = hashed("index", ".js", entry)
    files[entry_key] = entry
    css = b"body { font-family: Inter, sans-serif; }\n"
    files[hashed("index", ".css", css)] = css
    files[hashed("inter-latin", ".woff2", b"wOF2" + bytes(range(64)))] = b"wOF2" + bytes(range(64))
    files[hashed("logo", ".png", b"\x89PNG\r\n\x1a\n")] = b"\x89PNG\r\n\x1a\n"
    files["index.html"] = (
        f'<!doctype html><html><head><script type="module" src="/{entry_key}"></script>'
        f"</head><body><div id=app></div><!-- v{version} --></body></html>\n"
    ).encode()
    files["config.json"] = b'{"apiOrigin": ""}\n'
    files["favicon.ico"] = b"\x00\x00\x01\x00icon"
    files["favicon.svg"] = b"<svg xmlns='http://www.w3.org/2000/svg'/>\n"
    files["robots.txt"] = b"User-agent: *\nAllow: /\n"
    files["site.webmanifest"] = b'{"name": "Cloud Trade Copier"}\n'
    for key, body in files.items():
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    (root / ".DS_Store").write_bytes(b"not part of the app")
    return files


@pytest.fixture
def dists(tmp_path: Path) -> Iterator[Any]:
    """``dists(n)``: the build of version ``n`` in a folder of its own, and its files."""

    def build(version: int) -> tuple[Path, dict[str, bytes]]:
        root = tmp_path / f"v{version}"
        return root, make_dist(root, version)

    yield build


# ---- moto, and a record of the calls the command makes ---------------------------------------


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MOTO_S3_DEFAULT_MAX_KEYS", "100")
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
        server.stop()


def aws_environment(moto_url: str, with_credentials: bool = True) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
    )
    if with_credentials:
        env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    return env


@dataclass
class Aws:
    """The moto account of one test: a bucket, a distribution, and ways to look at them."""

    url: str
    s3: Any
    cloudfront: Any
    distribution_id: str

    def stored_keys(self) -> set[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
        return {item["Key"] for page in pages for item in page.get("Contents", [])}

    def body(self, key: str) -> bytes:
        return bytes(self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())

    def head(self, key: str) -> dict[str, Any]:
        return dict(self.s3.head_object(Bucket=BUCKET, Key=key))

    def pointer(self) -> dict[str, Any]:
        return dict(json.loads(self.body("_releases/current.json")))

    def invalidations(self) -> list[list[str]]:
        listed = self.cloudfront.list_invalidations(DistributionId=self.distribution_id)
        ids = [item["Id"] for item in listed["InvalidationList"].get("Items", [])]
        return [
            self.cloudfront.get_invalidation(DistributionId=self.distribution_id, Id=i)[
                "Invalidation"
            ]["InvalidationBatch"]["Paths"]["Items"]
            for i in ids
        ]

    def snapshot(self) -> dict[str, tuple[str, Any]]:
        """Every object's ETag (the MD5 of its body here) and time of writing, from the listing."""
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
        return {
            item["Key"]: (item["ETag"].strip('"'), item["LastModified"])
            for page in pages
            for item in page.get("Contents", [])
        }

    def holds(self, files: dict[str, bytes]) -> bool:
        """Whether every one of ``files`` is stored with exactly that body."""
        stored = self.snapshot()
        return all(
            key in stored and stored[key][0] == hashlib.md5(body).hexdigest()
            for key, body in files.items()
        )


@pytest.fixture
def aws(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Aws:
    for name, value in aws_environment(moto_url).items():
        monkeypatch.setenv(name, value)
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        if name not in aws_environment(moto_url):
            monkeypatch.delenv(name)
    urllib.request.urlopen(urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST"))
    s3 = boto3.client("s3", endpoint_url=moto_url)
    cloudfront = boto3.client("cloudfront", endpoint_url=moto_url)
    s3.create_bucket(Bucket=BUCKET)
    created = cloudfront.create_distribution(
        DistributionConfig={
            "CallerReference": "tests",
            "Comment": "",
            "Enabled": True,
            "Aliases": {"Quantity": 1, "Items": ["app.example.com"]},
            "Origins": {
                "Quantity": 1,
                "Items": [
                    {
                        "Id": "site",
                        "DomainName": f"{BUCKET}.s3.us-east-1.amazonaws.com",
                        "S3OriginConfig": {"OriginAccessIdentity": ""},
                    }
                ],
            },
            "DefaultCacheBehavior": {
                "TargetOriginId": "site",
                "ViewerProtocolPolicy": "redirect-to-https",
                "MinTTL": 0,
                "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}},
                "TrustedSigners": {"Enabled": False, "Quantity": 0},
            },
        }
    )
    return Aws(moto_url, s3, cloudfront, created["Distribution"]["Id"])


@dataclass
class Calls:
    """The AWS calls the command completed, in order, as (operation, key); can fail one upload."""

    done: list[tuple[str, str | None]] = field(default_factory=list)
    fail_upload_of: str | None = None

    def attach(self, client: Any) -> None:
        client.meta.events.register("before-parameter-build", self._before)
        client.meta.events.register("after-call", self._after)

    def _before(
        self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any
    ) -> None:
        context["test_key"] = params.get("Key")
        if model.name == "PutObject" and params.get("Key") == self.fail_upload_of:
            raise EndpointConnectionError(endpoint_url="https://s3.amazonaws.com")

    def _after(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        self.done.append((model.name, context.get("test_key")))

    def count(self, operation: str) -> int:
        return sum(1 for name, _ in self.done if name == operation)

    def uploads(self) -> list[str]:
        return [str(key) for name, key in self.done if name == "PutObject"]

    def clear(self) -> None:
        self.done.clear()


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    record = Calls()
    make_clients = publish_frontend._clients

    def clients(endpoint_url: str | None, jobs: int) -> tuple[Any, Any]:
        s3, cloudfront = make_clients(endpoint_url, jobs)
        record.attach(s3)
        record.attach(cloudfront)
        return s3, cloudfront

    monkeypatch.setattr(publish_frontend, "_clients", clients)
    return record


@dataclass
class Run:
    status: int
    out: str
    err: str


def run(aws: Aws, dist: Path | None, *extra: str, distribution_id: str | None = None) -> Run:
    """The command, in this process (so that ``calls`` sees its clients)."""
    argv = ["--bucket", BUCKET, "--distribution-id", distribution_id or aws.distribution_id]
    argv += ["--endpoint-url", aws.url, *extra]
    if dist is not None:
        argv += ["--dist", str(dist)]
    out, err = io.StringIO(), io.StringIO()
    status = publish_frontend.main(argv, out=out, err=err)
    return Run(status, out.getvalue(), err.getvalue())


def line(text: str, start: str) -> str:
    """The one line of ``text`` that starts with ``start``."""
    (found,) = [each for each in text.splitlines() if each.startswith(start)]
    return found


def assert_one_line_error(result: Run, *words: str) -> None:
    assert result.status == 1, result
    assert result.err.startswith("python -m infra.publish_frontend: error: ")
    assert result.err.count("\n") == 1, result.err
    assert "Traceback" not in result.err + result.out
    for word in words:
        assert word in result.err


# ---- the tests -------------------------------------------------------------------------------


def test_every_object_has_its_type_cache_and_hash(aws: Aws, calls: Calls, dists: Any) -> None:
    dist, files = dists(1)
    result = run(aws, dist, "--api-origin", "https://api.example.com/")
    assert result.status == 0, result.err

    expected = {**files, "config.json": b'{"apiOrigin": "https://api.example.com"}\n'}
    assert len(expected) > 100
    site_keys = {key for key in aws.stored_keys() if not key.startswith("_releases/")}
    assert site_keys == set(expected)  # .DS_Store is not published
    for key, body in expected.items():
        head = aws.head(key)
        assert aws.body(key) == body, key
        assert head["ContentType"] == TYPES[Path(key).suffix], key
        cache = IMMUTABLE if key.startswith("assets/") else "no-cache"
        assert head["CacheControl"] == cache, key
        assert head["Metadata"] == {"sha256": hashlib.sha256(body).hexdigest()}, key
    size = sum(len(body) for body in expected.values())
    assert 1000 < size < 1_000_000
    summary = f"uploaded {len(expected)} ({size / 1000:.1f} kB), unchanged 0, removed 0"
    assert line(result.out, "uploaded ") == summary
    assert calls.count("DeleteObjects") == 0


def test_assets_go_first_and_index_html_last(aws: Aws, calls: Calls, dists: Any) -> None:
    dist, _ = dists(1)
    assert run(aws, dist).status == 0
    uploads = calls.uploads()
    site = [key for key in uploads if not key.startswith("_releases/")]
    assets = [key for key in site if key.startswith("assets/")]
    assert len(assets) == CHUNKS + 4
    assert site[: len(assets)] == assets
    assert site[-2:] == ["config.json", "index.html"]
    # after index.html only the release pointer, which names the release that is now live
    assert uploads[uploads.index("index.html") + 1 :] == ["_releases/current.json"]
    assert uploads.index("_releases/" + aws.pointer()["current"] + ".json") < uploads.index(
        "index.html"
    )


def test_second_run_uploads_nothing(aws: Aws, calls: Calls, dists: Any) -> None:
    dist, files = dists(1)
    first = run(aws, dist)
    assert first.status == 0
    before = aws.snapshot()
    calls.clear()

    second = run(aws, dist)
    assert second.status == 0, second.err
    assert calls.count("PutObject") == 0
    assert calls.count("DeleteObjects") == 0
    assert calls.count("CreateInvalidation") == 0
    assert calls.count("ListObjectsV2") == 2  # 131 objects, 100 a page
    assert aws.snapshot() == before
    assert line(second.out, "uploaded ") == f"uploaded 0 (0 B), unchanged {len(files)}, removed 0"
    release = aws.pointer()["current"]
    assert f"release {release} was already live: nothing to invalidate" in second.out
    assert len(aws.invalidations()) == 1


def test_previous_release_kept_older_ones_removed(aws: Aws, calls: Calls, dists: Any) -> None:
    (d1, v1), (d2, v2), (d3, v3) = dists(1), dists(2), dists(3)
    aws.s3.put_object(Bucket=BUCKET, Key="ops/notes.txt", Body=b"not the command's")
    assert run(aws, d1).status == 0
    r1 = aws.pointer()["current"]
    assert run(aws, d2).status == 0
    r2 = aws.pointer()["current"]
    assert aws.pointer() == {"current": r2, "previous": r1}
    assert set(v1) | set(v2) <= aws.stored_keys()  # nothing removed yet: v1 is the previous release

    third = run(aws, d3)
    assert third.status == 0, third.err
    r3 = aws.pointer()["current"]
    assert aws.pointer() == {"current": r3, "previous": r2}
    only_v1 = set(v1) - set(v2) - set(v3)
    assert len(only_v1) == CHANGING + 1  # the chunks that changed, and the entry
    assert aws.stored_keys() == set(v2) | set(v3) | {
        "ops/notes.txt",
        "_releases/current.json",
        f"_releases/{r2}.json",
        f"_releases/{r3}.json",
    }
    assert f"removed {len(only_v1) + 1}" in line(third.out, "uploaded ")  # and r1's manifest
    assert "left alone: 1 objects this command did not write (ops/notes.txt)" in third.out
    assert aws.body("index.html") == v3["index.html"]


def test_invalidation_paths_and_wait(aws: Aws, calls: Calls, dists: Any) -> None:
    (d1, _), (d2, _) = dists(1), dists(2)
    first = run(aws, d1)
    assert first.status == 0
    assert aws.invalidations() == [["/index.html", "/", "/config.json"]]
    assert calls.count("GetInvalidation") == 1
    waiting = "/index.html, /, /config.json: waiting for it"
    invalidation = next(x for x in first.out.splitlines() if x.endswith(waiting)).split()[1]
    assert f"invalidation {invalidation} completed in 0 s" in first.out

    calls.clear()
    second = run(aws, d2, "--no-wait")
    assert second.status == 0
    assert aws.invalidations() == [["/index.html", "/", "/config.json"]] * 2
    assert calls.count("GetInvalidation") == 0
    assert "started, not waited for" in second.out


def test_dry_run_changes_nothing(aws: Aws, calls: Calls, dists: Any) -> None:
    (d1, v1), (d2, v2), (d3, v3) = dists(1), dists(2), dists(3)
    assert run(aws, d1).status == 0
    assert run(aws, d2).status == 0
    before, pointer = aws.snapshot(), aws.pointer()
    calls.clear()

    dry = run(aws, d3, "--dry-run")
    assert dry.status == 0, dry.err
    assert {name for name, _ in calls.done} <= {
        "HeadBucket",
        "GetDistribution",
        "GetObject",
        "ListObjectsV2",
        "HeadObject",
    }
    assert aws.snapshot() == before
    assert aws.pointer() == pointer
    assert len(aws.invalidations()) == 2
    changed = set(v3) - set(v2)
    planned = {
        each.split()[2] for each in dry.out.splitlines() if each.startswith("  would upload ")
    }
    assert planned == changed | {"index.html"}
    removed = {
        each.split()[2] for each in dry.out.splitlines() if each.startswith("  would remove ")
    }
    assert removed == (set(v1) - set(v2) - set(v3)) | {f"_releases/{pointer['previous']}.json"}
    assert dry.out.rstrip().endswith("dry run: nothing was changed")


@pytest.mark.parametrize("failing", ["assets/chunk3", "favicon.svg", "index.html"])
def test_failure_part_way_then_rerun_completes(
    aws: Aws, calls: Calls, dists: Any, failing: str
) -> None:
    (d1, v1), (d2, v2) = dists(1), dists(2)
    (d2 / "favicon.svg").write_bytes(b"<svg xmlns='http://www.w3.org/2000/svg' id='v2'/>\n")
    v2["favicon.svg"] = (d2 / "favicon.svg").read_bytes()
    assert run(aws, d1).status == 0
    r1 = aws.pointer()["current"]
    failing_key = next(key for key in v2 if key.startswith(failing))
    calls.clear()
    calls.fail_upload_of = failing_key

    broken = run(aws, d2)
    assert_one_line_error(broken, f"could not upload s3://{BUCKET}/{failing_key}")
    uploaded_first = calls.uploads()
    assert failing_key not in uploaded_first
    # the site still serves release 1: its index.html, and every file that one names
    assert aws.body("index.html") == v1["index.html"]
    assert aws.pointer()["current"] == r1
    assert aws.holds({key: body for key, body in v1.items() if key.startswith("assets/")})
    assert len(aws.invalidations()) == 1

    calls.clear()
    calls.fail_upload_of = None
    rerun = run(aws, d2)
    assert rerun.status == 0, rerun.err
    changed = {key for key, body in v2.items() if v1.get(key) != body}
    site_uploads = {key for key in uploaded_first + calls.uploads() if not key.startswith("_")}
    assert site_uploads == changed
    assert not set(calls.uploads()) & {k for k in uploaded_first if not k.startswith("_")}
    assert aws.body("index.html") == v2["index.html"]
    assert aws.pointer() == {"current": aws.pointer()["current"], "previous": r1}
    assert aws.holds(v2)
    assert len(aws.invalidations()) == 2


def test_missing_bucket(aws: Aws, dists: Any) -> None:
    dist, _ = dists(1)
    argv = ["--bucket", "no-such-bucket", "--distribution-id", aws.distribution_id]
    out, err = io.StringIO(), io.StringIO()
    status = publish_frontend.main(
        [*argv, "--endpoint-url", aws.url, "--dist", str(dist)], out, err
    )
    assert_one_line_error(
        Run(status, out.getvalue(), err.getvalue()), "'no-such-bucket' does not exist"
    )
    assert aws.invalidations() == []


def test_unknown_distribution_changes_nothing(aws: Aws, dists: Any) -> None:
    dist, _ = dists(1)
    result = run(aws, dist, distribution_id="E0000NOTTHERE")
    assert_one_line_error(result, "distribution 'E0000NOTTHERE' does not exist")
    assert aws.stored_keys() == set()


def test_no_credentials(aws: Aws, dists: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    dist, _ = dists(1)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    result = run(aws, dist)
    assert_one_line_error(result, "no AWS credentials found")
    assert aws.invalidations() == []


def test_unknown_file_type_stops_before_any_change(aws: Aws, dists: Any) -> None:
    dist, _ = dists(1)
    (dist / "assets" / "data-1a2b3c4d.bin").write_bytes(b"\0")
    result = run(aws, dist)
    assert_one_line_error(result, "no Content-Type for 'assets/data-1a2b3c4d.bin'")
    assert aws.stored_keys() == set()


def test_progress_line_for_long_uploads(aws: Aws, dists: Any) -> None:
    dist, files = dists(1)
    out = io.StringIO()
    s3 = boto3.client("s3", endpoint_url=aws.url)
    cloudfront = boto3.client("cloudfront", endpoint_url=aws.url)
    publish(
        read_site(dist, None),
        Bucket(s3, BUCKET),
        Distribution(cloudfront, aws.distribution_id),
        Options(jobs=2, progress_every_s=0),
        out,
    )
    progress = [each for each in out.getvalue().splitlines() if each.startswith("  ")]
    assert len(progress) == len(files) - 1  # one per file but the last, which the summary tells
    assert progress[0].startswith(f"  1/{len(files)} files, ")


def test_the_command_as_an_operator_runs_it(aws: Aws, dists: Any) -> None:
    dist, _ = dists(1)
    argv = [sys.executable, "-m", "infra.publish_frontend", "--bucket", BUCKET]
    argv += ["--distribution-id", aws.distribution_id, "--endpoint-url", aws.url]
    argv += ["--dist", str(dist), "--api-origin", "https://api.example.com"]
    env = aws_environment(aws.url)
    done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert f"release {aws.pointer()['current']} is live; kept for open tabs: none" in done.stdout
    assert json.loads(aws.body("config.json")) == {"apiOrigin": "https://api.example.com"}

    env = aws_environment(aws.url, with_credentials=False)
    done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.startswith("python -m infra.publish_frontend: error: no AWS credentials")
    assert done.stderr.count("\n") == 1


# ---- building, and the local side --------------------------------------------------------------


@dataclass
class FakeNpm:
    """Stands in for npm: records the commands; ``npm run build`` writes a dist."""

    status: int = 0
    commands: list[list[str]] = field(default_factory=list)

    def __call__(self, command: Any, cwd: Path) -> int:
        self.commands.append(list(command))
        if command[:2] == ["npm", "ci"]:
            (cwd / "node_modules").mkdir(exist_ok=True)
            (cwd / "node_modules" / ".package-lock.json").write_text("{}")
        if command[:3] == ["npm", "run", "build"] and self.status == 0:
            make_dist(cwd / "dist", 1)
        return self.status


def make_frontend(root: Path) -> Path:
    (root / "src").mkdir(parents=True)
    (root / "src" / "main.js").write_text("import './app'\n")
    (root / "package.json").write_text('{"scripts": {"build": "vite build"}}\n')
    (root / "package-lock.json").write_text("{}\n")
    return root


def make_older(path: Path, than: Path) -> None:
    earlier = than.stat().st_mtime - 10
    os.utime(path, (earlier, earlier))


def test_build_when_missing_then_only_when_sources_change(tmp_path: Path) -> None:
    frontend = make_frontend(tmp_path / "frontend")
    npm = FakeNpm()
    assert ensure_built(frontend, frontend / "dist", npm).startswith("built (")
    assert npm.commands == [["npm", "ci"], ["npm", "run", "build"]]

    npm.commands.clear()
    assert ensure_built(frontend, frontend / "dist", npm) == "up to date"
    assert npm.commands == []

    make_older(frontend / "dist" / "index.html", than=frontend / "src" / "main.js")
    assert build_reason(frontend, frontend / "dist") is not None
    ensure_built(frontend, frontend / "dist", npm)
    assert npm.commands == [["npm", "run", "build"]]  # node_modules is there and current


def test_build_failures_are_one_line_errors(tmp_path: Path) -> None:
    frontend = make_frontend(tmp_path / "frontend")
    with pytest.raises(BuildError, match=r"`npm ci` in .* failed with exit status 1"):
        ensure_built(frontend, frontend / "dist", FakeNpm(status=1))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BuildError, match=r"no package\.json"):
        ensure_built(empty, empty / "dist", FakeNpm())


def test_command_builds_the_app_when_dist_is_missing(
    aws: Aws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frontend = make_frontend(tmp_path / "frontend")
    npm = FakeNpm()
    monkeypatch.setattr(publish_frontend, "FRONTEND", frontend)
    monkeypatch.setattr(publish_frontend, "run_command", npm)
    result = run(aws, None, "--api-origin", "https://api.example.com")
    assert result.status == 0, result.err
    assert npm.commands == [["npm", "ci"], ["npm", "run", "build"]]
    assert result.out.startswith(f"app: {frontend / 'dist'}, build built (")
    assert aws.body("index.html") == (frontend / "dist" / "index.html").read_bytes()
    # config.json is generated for the upload, not written into the dist the hub serves locally
    assert json.loads((frontend / "dist" / "config.json").read_text()) == {"apiOrigin": ""}


def test_runtime_config() -> None:
    assert json.loads(runtime_config("https://api.example.com/")) == {
        "apiOrigin": "https://api.example.com"
    }
    assert json.loads(runtime_config("")) == {"apiOrigin": ""}
    assert json.loads(runtime_config("http://localhost:8000")) == {
        "apiOrigin": "http://localhost:8000"
    }
    for bad in ["http://api.example.com", "https://api.example.com/api", "api.example.com"]:
        with pytest.raises(ConfigError):
            runtime_config(bad)
