"""Publish the built web app to S3 behind CloudFront: ``python -m infra.publish_frontend``.

    python -m infra.publish_frontend --bucket B --distribution-id D \\
        [--api-origin https://api.example.com] [--endpoint-url URL] [--dry-run] [--no-wait]

Builds ``frontend/dist`` when it is missing or older than its sources, uploads what changed (the
hashed ``assets/`` first, ``index.html`` last), invalidates the names that never change, and
removes what belongs to neither this release nor the previous one. docs/deploy.md is the guide;
``infra/publish/release.py`` says why the steps come in this order.

This module is the command line only: the one place where the errors of ``infra.publish.errors``
become a line on stderr and an exit status, never a stack trace.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

import boto3
from botocore.config import Config

from infra.publish.build import build_reason, ensure_built, run_command
from infra.publish.errors import PublishError
from infra.publish.release import Options, Report, publish
from infra.publish.remote import Bucket, Distribution, aws
from infra.publish.site import read_site

PROG = "python -m infra.publish_frontend"
FRONTEND = Path(__file__).resolve().parent.parent / "frontend"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Publish the built web app to S3 and invalidate CloudFront (docs/deploy.md).",
    )
    parser.add_argument("--bucket", required=True, help="the stack's BucketName output")
    parser.add_argument(
        "--distribution-id", required=True, help="the stack's DistributionId output"
    )
    parser.add_argument(
        "--api-origin",
        help="the hubs' origin, written to config.json (https://api.example.com); "
        "without it, the build's config.json, or the page's own origin",
    )
    parser.add_argument("--endpoint-url", help="an S3/CloudFront-compatible endpoint (tests)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for the invalidation")
    parser.add_argument(
        "--dist",
        type=Path,
        help="publish this built app as it is, without building (default: frontend/dist, built "
        "when missing or older than its sources)",
    )
    parser.add_argument("--no-build", action="store_true", help="never build frontend/dist")
    parser.add_argument("--jobs", type=int, default=8, help="parallel uploads (8)")
    return parser.parse_args(argv)


def _clients(endpoint_url: str | None, jobs: int) -> tuple[Any, Any]:
    config = Config(
        retries={"mode": "standard", "max_attempts": 5},
        max_pool_connections=max(10, jobs),
        # S3-compatible endpoints (moto, MinIO) name the bucket in the path, not the host.
        s3={"addressing_style": "path"} if endpoint_url else None,
    )
    with aws("set up the AWS clients"):
        session = boto3.session.Session()
        s3 = session.client("s3", endpoint_url=endpoint_url, config=config)
        cloudfront = session.client("cloudfront", endpoint_url=endpoint_url, config=config)
    return s3, cloudfront


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is under it, for shorter lines."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _dry_build(dist: Path) -> str:
    reason = build_reason(FRONTEND, dist)
    if reason is None:
        return "up to date"
    return f"out of date ({reason}); a dry run does not build: the plan is of the build as it is"


def run(args: argparse.Namespace, out: TextIO) -> Report:
    """Build if needed, read the files, publish; raises ``PublishError`` for the operator."""
    if args.dist is not None:
        dist, built = args.dist, "as given (--dist)"
    elif args.no_build:
        dist, built = FRONTEND / "dist", "not checked (--no-build)"
    else:
        dist = FRONTEND / "dist"
        built = _dry_build(dist) if args.dry_run else ensure_built(FRONTEND, dist, run_command)
    print(f"app: {_shown(dist)}, build {built}", file=out, flush=True)
    files = read_site(dist, args.api_origin)
    s3, cloudfront = _clients(args.endpoint_url, args.jobs)
    options = Options(dry_run=args.dry_run, wait=not args.no_wait, jobs=args.jobs)
    return publish(
        files, Bucket(s3, args.bucket), Distribution(cloudfront, args.distribution_id), options, out
    )


def main(argv: list[str] | None = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    args = parse_args(argv)
    try:
        run(args, out)
    except PublishError as error:
        print(f"{PROG}: error: {error}", file=err)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted: run it again to complete the release", file=err)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
