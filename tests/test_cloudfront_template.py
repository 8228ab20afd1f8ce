"""infra/cloudfront.yaml, checked offline: cfn-lint, the properties that make the site private
and safe, and the CloudFront Function's routing run under node.

moto deploys neither CloudFront Functions nor response-headers policies, so nothing here deploys
the template; cfn-lint validates it against CloudFormation's resource schemas.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint, lint_file
from cfnlint.decode import decode_str

TEMPLATE = Path(__file__).resolve().parent.parent / "infra" / "cloudfront.yaml"
REGIONS = ["us-east-1", "eu-west-1", "eu-central-1", "ap-southeast-2"]


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    decoded, problems = decode_str(TEMPLATE.read_text())
    assert not problems, problems
    assert decoded is not None
    return dict(decoded)


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {
        name: resource["Properties"]
        for name, resource in template["Resources"].items()
        if resource["Type"] == kind
    }


def distribution(template: dict[str, Any]) -> dict[str, Any]:
    (config,) = resources(template, "AWS::CloudFront::Distribution").values()
    return dict(config["DistributionConfig"])


def test_cfn_lint_finds_no_error_or_warning() -> None:
    problems = lint_file(TEMPLATE, ManualArgs(regions=REGIONS))
    assert [str(problem) for problem in problems] == []


def test_cfn_lint_would_catch_a_broken_template() -> None:
    """The lint above can fail: a misspelt policy, a wrong attribute are errors."""
    text = TEMPLATE.read_text()
    broken_tls = text.replace("Default: TLSv1.2_2021", "Default: TLSv1.2_2012")
    assert any("E2015" in str(problem) for problem in lint(broken_tls, regions=["us-east-1"]))
    broken_ref = text.replace("!GetAtt SpaRouting.FunctionARN", "!GetAtt SpaRouting.Arn")
    assert any("E1010" in str(problem) for problem in lint(broken_ref, regions=["us-east-1"]))


def test_site_bucket_is_private_and_owner_enforced(template: dict[str, Any]) -> None:
    site = template["Resources"]["SiteBucket"]["Properties"]
    assert site["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert site["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]


def test_bucket_policy_admits_this_distribution_only(template: dict[str, Any]) -> None:
    policies = resources(template, "AWS::S3::BucketPolicy")
    site_policy = next(p for p in policies.values() if p["Bucket"] == {"Ref": "SiteBucket"})
    statements = site_policy["PolicyDocument"]["Statement"]
    allows = [s for s in statements if s["Effect"] == "Allow"]
    assert {s["Action"] for s in allows} == {"s3:GetObject", "s3:ListBucket"}
    source = "arn:${AWS::Partition}:cloudfront::${AWS::AccountId}:distribution/${Distribution}"
    for statement in allows:
        assert statement["Principal"] == {"Service": "cloudfront.amazonaws.com"}
        assert statement["Condition"] == {"StringEquals": {"AWS:SourceArn": {"Fn::Sub": source}}}
    denied = [s["Resource"] for s in statements if s["Effect"] == "Deny"]
    assert {"Fn::Sub": "${SiteBucket.Arn}/_releases/*"} in denied


def test_distribution_reads_the_bucket_through_origin_access_control(
    template: dict[str, Any],
) -> None:
    (origin,) = distribution(template)["Origins"]
    assert origin["DomainName"] == {"Fn::GetAtt": ["SiteBucket", "RegionalDomainName"]}
    assert origin["OriginAccessControlId"] == {"Fn::GetAtt": ["OriginAccessControl", "Id"]}
    assert origin["S3OriginConfig"] == {"OriginAccessIdentity": ""}
    (oac,) = resources(template, "AWS::CloudFront::OriginAccessControl").values()
    config = oac["OriginAccessControlConfig"]
    assert (config["SigningBehavior"], config["OriginAccessControlOriginType"]) == ("always", "s3")


def test_distribution_is_https_only_with_tls_1_2_and_logs(template: dict[str, Any]) -> None:
    config = distribution(template)
    behaviour = config["DefaultCacheBehavior"]
    assert behaviour["ViewerProtocolPolicy"] in {"redirect-to-https", "https-only"}
    certificate = config["ViewerCertificate"]
    assert certificate["MinimumProtocolVersion"] == {"Ref": "MinimumProtocolVersion"}
    assert template["Parameters"]["MinimumProtocolVersion"]["Default"] == "TLSv1.2_2021"
    assert all(
        v.startswith(("TLSv1.2_", "TLSv1.3_"))
        for v in template["Parameters"]["MinimumProtocolVersion"]["AllowedValues"]
    )
    assert certificate["AcmCertificateArn"] == {"Ref": "CertificateArn"}
    assert certificate["SslSupportMethod"] == "sni-only"
    assert config["DefaultRootObject"] == "index.html"
    assert config["Aliases"] == [{"Ref": "DomainName"}]
    assert config["Logging"]["Bucket"] == {"Fn::GetAtt": ["LogBucket", "DomainName"]}
    log_bucket = template["Resources"]["LogBucket"]["Properties"]
    # CloudFront's standard logs arrive with an ACL grant: BucketOwnerEnforced would refuse them.
    assert log_bucket["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerPreferred"}]


def test_routes_go_through_the_function_not_error_pages(template: dict[str, Any]) -> None:
    config = distribution(template)
    assert "CustomErrorResponses" not in config
    assert config["DefaultCacheBehavior"]["FunctionAssociations"] == [
        {
            "EventType": "viewer-request",
            "FunctionARN": {"Fn::GetAtt": ["SpaRouting", "FunctionARN"]},
        }
    ]
    function = template["Resources"]["SpaRouting"]["Properties"]
    assert function["FunctionConfig"]["Runtime"] == "cloudfront-js-2.0"
    assert function["AutoPublish"] is True


def test_security_headers(template: dict[str, Any]) -> None:
    (policy,) = resources(template, "AWS::CloudFront::ResponseHeadersPolicy").values()
    headers = policy["ResponseHeadersPolicyConfig"]["SecurityHeadersConfig"]
    assert headers["StrictTransportSecurity"]["AccessControlMaxAgeSec"] >= 31536000
    assert headers["ContentTypeOptions"] == {"Override": True}
    assert headers["FrameOptions"]["FrameOption"] == "DENY"
    assert headers["ReferrerPolicy"]["ReferrerPolicy"] == "strict-origin-when-cross-origin"
    csp_template = headers["ContentSecurityPolicy"]["ContentSecurityPolicy"]["Fn::Sub"]
    csp = csp_template.replace("${HubOrigin}", "api.example.com")
    directives = dict(
        (part.split()[0], part.split()[1:]) for part in csp.split(";") if part.strip()
    )
    assert directives["connect-src"] == [
        "'self'",
        "https://api.example.com",
        "wss://api.example.com",
    ]
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["script-src"] == ["'self'"]
    assert directives["default-src"] == ["'self'"]
    assert "\n" not in csp
    distribution_behaviour = distribution(template)["DefaultCacheBehavior"]
    assert distribution_behaviour["ResponseHeadersPolicyId"] == {"Ref": "SecurityHeaders"}


def test_parameters_and_outputs(template: dict[str, Any]) -> None:
    assert {"DomainName", "CertificateArn", "HubOrigin"} <= set(template["Parameters"])
    assert template["Outputs"]["BucketName"]["Value"] == {"Ref": "SiteBucket"}
    assert template["Outputs"]["DistributionId"]["Value"] == {"Ref": "Distribution"}
    hub = re.compile(template["Parameters"]["HubOrigin"]["AllowedPattern"])
    assert hub.fullmatch("api.example.com")
    assert hub.fullmatch("api.example.com:8443")
    assert not hub.fullmatch("https://api.example.com")


ROUTES = {
    "/": "/index.html",
    "/dashboard": "/index.html",
    "/c/6650b1f2a9": "/index.html",
    "/me/": "/index.html",
    "/admin/users": "/index.html",
    "/index.html": "/index.html",
    "/config.json": "/config.json",
    "/favicon.ico": "/favicon.ico",
    "/assets/index-B1x9kQ2a.js": "/assets/index-B1x9kQ2a.js",
    "/assets/gone": "/assets/gone",
    "/assets/deep/missing": "/assets/deep/missing",
}


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_function_rewrites_routes_and_leaves_files(
    template: dict[str, Any], tmp_path: Path
) -> None:
    code = template["Resources"]["SpaRouting"]["Properties"]["FunctionCode"]
    assert len(code.encode()) < 10_240  # CloudFront Functions' size limit
    script = tmp_path / "function.js"
    script.write_text(
        code
        + "\nconst uris = JSON.parse(process.argv[2]);\n"
        + "const event = (uri) => ({request: {method: 'GET', uri, headers: {}}});\n"
        + "console.log(JSON.stringify(uris.map((uri) => handler(event(uri)).uri)));\n"
    )
    result = subprocess.run(
        ["node", str(script), json.dumps(list(ROUTES))],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert dict(zip(ROUTES, json.loads(result.stdout), strict=True)) == ROUTES
