"""The errors the publish command expects, each one a sentence for the operator.

``infra.publish_frontend.main`` is the one place that turns them into a line on stderr and an exit
status; everything below it raises these instead of printing, so that tests can assert the kind.
"""


class PublishError(Exception):
    """Root: anything the operator can fix; ``str(error)`` is the whole message."""


class BuildError(PublishError):
    """The app could not be built (no npm, a failed ``npm ci`` or ``npm run build``)."""


class SiteError(PublishError):
    """The built app cannot be published as it is (no index.html, an unknown file type)."""


class ConfigError(PublishError):
    """A command-line value is unusable (an ``--api-origin`` that is not an origin)."""


class AwsError(PublishError):
    """An AWS call failed for a reason we have no more specific type for."""


class MissingCredentials(AwsError):
    """boto3 found no credentials at all (no profile, no environment, no instance role)."""


class CredentialsRejected(AwsError):
    """AWS refused the credentials (unknown key, bad secret, expired session)."""


class AccessDenied(AwsError):
    """The credentials are valid but may not do what the command needs."""


class BucketNotFound(AwsError):
    """The bucket named by ``--bucket`` does not exist."""


class DistributionNotFound(AwsError):
    """The distribution named by ``--distribution-id`` does not exist."""
