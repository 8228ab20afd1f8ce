"""The bucket and the distribution: the few calls a release makes, with AWS's errors made ours.

Every boto3 call goes through ``aws()``, which turns botocore's exceptions into the types of
``infra.publish.errors`` with a sentence naming what was being done, so that nothing above this
module needs to know botocore.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    PartialCredentialsError,
)

from infra.publish.errors import (
    AccessDenied,
    AwsError,
    BucketNotFound,
    CredentialsRejected,
    DistributionNotFound,
    MissingCredentials,
    PublishError,
)
from infra.publish.site import SiteFile

HASH_METADATA = "sha256"
"""User metadata (``x-amz-meta-sha256``) holding the hex SHA-256 of an object's body: how a run
knows an object is already there, and that it was written by this command (others are not ours
to delete)."""

_REJECTED = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidToken",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
}
_DENIED = {"AccessDenied", "AccessDeniedException", "403"}
_MISSING = {"NoSuchBucket", "NoSuchDistribution", "404"}
_DELETE_BATCH = 1000  # DeleteObjects takes at most this many keys


def _status(error: ClientError) -> int | None:
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else None


@contextmanager
def aws(doing: str, missing: PublishError | None = None) -> Iterator[None]:
    """Translate botocore's errors raised while ``doing`` something; ``missing`` for a 404."""
    try:
        yield
    except (NoCredentialsError, PartialCredentialsError) as error:
        raise MissingCredentials(
            "no AWS credentials found: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or run where an IAM role provides them"
        ) from error
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        message = str(error.response.get("Error", {}).get("Message", "")) or code
        if missing is not None and (code in _MISSING or _status(error) == 404):
            raise missing from error
        if code in _REJECTED:
            raise CredentialsRejected(
                f"AWS rejected the credentials ({code}) when trying to {doing}"
            ) from error
        if code in _DENIED or _status(error) == 403:
            raise AccessDenied(
                f"access denied when trying to {doing}: check which credentials are in use "
                "and their permissions (docs/deploy.md lists them)"
            ) from error
        raise AwsError(f"could not {doing}: {code}: {message}") from error
    except BotoCoreError as error:
        raise AwsError(f"could not {doing}: {error}") from error


@dataclass(frozen=True)
class StoredObject:
    """What the bucket holds under a key, as far as deciding to upload or delete needs."""

    sha256: str | None
    content_type: str
    cache_control: str

    def matches(self, file: SiteFile) -> bool:
        return (self.sha256, self.content_type, self.cache_control) == (
            file.sha256,
            file.content_type,
            file.cache_control,
        )


class Bucket:
    """The site's bucket."""

    def __init__(self, client: Any, name: str) -> None:
        self.client = client
        self.name = name

    def check(self) -> None:
        """Fail early, before any change, when the bucket is missing or out of reach."""
        missing = BucketNotFound(
            f"bucket {self.name!r} does not exist: check --bucket (the stack's BucketName output)"
        )
        with aws(f"read bucket {self.name!r}", missing):
            self.client.head_bucket(Bucket=self.name)

    def keys(self) -> list[str]:
        """Every key in the bucket, all pages of them."""
        found: list[str] = []
        with aws(f"list bucket {self.name!r}"):
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name):
                found += [item["Key"] for item in page.get("Contents", [])]
        return found

    def head(self, key: str) -> StoredObject | None:
        with aws(f"read s3://{self.name}/{key}"):
            try:
                answer = self.client.head_object(Bucket=self.name, Key=key)
            except ClientError as error:
                if _status(error) == 404:
                    return None
                raise
        return StoredObject(
            sha256=answer.get("Metadata", {}).get(HASH_METADATA),
            content_type=answer.get("ContentType", ""),
            cache_control=answer.get("CacheControl", ""),
        )

    def put(self, file: SiteFile) -> None:
        with aws(f"upload s3://{self.name}/{file.key}"):
            self.client.put_object(
                Bucket=self.name,
                Key=file.key,
                Body=file.body,
                ContentType=file.content_type,
                CacheControl=file.cache_control,
                Metadata={HASH_METADATA: file.sha256},
            )

    def get_json(self, key: str) -> Any:
        """The parsed JSON object under ``key``, or None when there is none."""
        with aws(f"read s3://{self.name}/{key}"):
            try:
                answer = self.client.get_object(Bucket=self.name, Key=key)
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") == "NoSuchKey":
                    return None
                raise
            body = answer["Body"].read()
        try:
            return json.loads(body)
        except ValueError:
            raise AwsError(f"s3://{self.name}/{key} is not JSON: delete it or fix it") from None

    def delete(self, keys: Sequence[str]) -> None:
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[start : start + _DELETE_BATCH]
            with aws(f"delete {len(batch)} objects from bucket {self.name!r}"):
                answer = self.client.delete_objects(
                    Bucket=self.name,
                    Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True},
                )
            errors = answer.get("Errors", [])
            if errors:
                first = errors[0]
                raise AwsError(
                    f"could not delete {len(errors)} objects from bucket {self.name!r}, "
                    f"{first.get('Key')}: {first.get('Code')}: {first.get('Message')}"
                )


class Distribution:
    """The CloudFront distribution in front of the bucket."""

    def __init__(self, client: Any, distribution_id: str) -> None:
        self.client = client
        self.id = distribution_id

    def check(self) -> str:
        """The distribution's domain name; fails when it does not exist or is out of reach."""
        missing = DistributionNotFound(
            f"distribution {self.id!r} does not exist: check --distribution-id "
            "(the stack's DistributionId output)"
        )
        with aws(f"read distribution {self.id!r}", missing):
            answer = self.client.get_distribution(Id=self.id)
        distribution = answer["Distribution"]
        aliases = distribution["DistributionConfig"].get("Aliases", {}).get("Items") or []
        return str(aliases[0] if aliases else distribution["DomainName"])

    def invalidate(self, paths: Sequence[str], reference: str) -> str:
        """Start an invalidation of ``paths``; returns its id."""
        with aws(f"invalidate {', '.join(paths)} on distribution {self.id!r}"):
            answer = self.client.create_invalidation(
                DistributionId=self.id,
                InvalidationBatch={
                    "Paths": {"Quantity": len(paths), "Items": list(paths)},
                    "CallerReference": reference,
                },
            )
        return str(answer["Invalidation"]["Id"])

    def wait(self, invalidation_id: str, every_s: float = 5.0, limit_s: float = 1200.0) -> None:
        """Poll until the invalidation has completed (seconds, at times over ten minutes).

        A loop of our own rather than botocore's ``invalidation_completed`` waiter: that one gives
        up after ten minutes and matches ``Completed`` exactly, where moto answers ``COMPLETED``.
        """
        deadline = time.monotonic() + limit_s
        while True:
            with aws(f"read invalidation {invalidation_id}"):
                answer = self.client.get_invalidation(DistributionId=self.id, Id=invalidation_id)
            if str(answer["Invalidation"]["Status"]).lower() == "completed":
                return
            if time.monotonic() >= deadline:
                raise AwsError(
                    f"invalidation {invalidation_id} had not completed after {limit_s:.0f} s; "
                    "CloudFront goes on with it, and the release is in place"
                )
            time.sleep(every_s)
