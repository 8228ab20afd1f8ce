"""Publishing the built web app to S3 behind CloudFront.

``python -m infra.publish_frontend`` is the command; this package is its parts, each testable on
its own: the local files of a release (``site``), building them (``build``), the bucket and the
distribution (``remote``) and the order of a release's steps (``release``).
"""
