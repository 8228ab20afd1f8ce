"""infra/k8s/, offline: the kustomize base and the example overlay build (``kubectl kustomize``),
every built-in kind validates against Kubernetes' own schemas (``kubernetes-validate``, strict,
for ``K8S_VERSION``), KEDA's ScaledObjects against infra/k8s/schemas/keda-scaledobject.json
(written for this project from KEDA's documented fields), and then what no schema can say: probes
where a process serves HTTP, resources, security contexts, disruption budgets that select their
pods, scalers that target the right pool and queue, secrets only through Secret references.

Without kubectl on PATH the tests that need a build skip, saying so.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from broker_workers.adapters.deriv.settings import DerivSettings
from signal_hub.api.channels import ChannelIn
from tests.test_monitoring import PROMETHEUS_CONFIG, matcher_problems

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "infra" / "k8s"
BUILDS = {"base": K8S / "base", "example": K8S / "overlays" / "example"}
SCHEMA = K8S / "schemas" / "keda-scaledobject.json"
K8S_VERSION = "1.31"

APP_IMAGE = "ghcr.io/example/cloud-trade-copier"
SECRET_NAMES = ("JWT_SECRET", "BROKER_CREDENTIALS_KEY", "MONGODB_URL")
WORKER_SECRETS = ("BROKER_CREDENTIALS_KEY",)
SECRET_LIKE = re.compile(r"SECRET|PASSWORD|TOKEN|CREDENTIAL|_KEY$|MONGODB_URL", re.IGNORECASE)
WORKLOAD_KINDS = ("Deployment", "StatefulSet")
# Test tools that the example overlay adds; held to every rule but the service's own.
TEST_TOOLS = {"deriv-sim"}

Doc = dict[str, Any]


@pytest.fixture(scope="module")
def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.skip("kubectl is not installed: `kubectl kustomize` builds the manifests")
    return path


_builds: dict[str, list[Doc]] = {}


def build(kubectl: str, name: str) -> list[Doc]:
    if name not in _builds:
        result = subprocess.run(
            [kubectl, "kustomize", str(BUILDS[name])],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        _builds[name] = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    return copy.deepcopy(_builds[name])


@pytest.fixture(scope="module", params=sorted(BUILDS))
def docs(request: pytest.FixtureRequest, kubectl: str) -> list[Doc]:
    return build(kubectl, request.param)


@pytest.fixture(scope="module")
def example(kubectl: str) -> list[Doc]:
    return build(kubectl, "example")


@pytest.fixture(scope="module")
def base(kubectl: str) -> list[Doc]:
    return build(kubectl, "base")


@pytest.fixture(scope="module")
def keda_schema() -> dict[str, Any]:
    with SCHEMA.open() as f:
        schema: dict[str, Any] = json.load(f)
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [doc for doc in docs if doc["kind"] == kind]


def named(docs: list[Doc], kind: str, name: str) -> Doc:
    (doc,) = [d for d in of_kind(docs, kind) if d["metadata"]["name"] == name]
    return doc


def workloads(docs: list[Doc]) -> list[Doc]:
    return [doc for doc in docs if doc["kind"] in WORKLOAD_KINDS]


def containers(workload: Doc, init: bool = True) -> list[Doc]:
    spec = workload["spec"]["template"]["spec"]
    return list(spec["containers"]) + (list(spec.get("initContainers", [])) if init else [])


def pod_labels(workload: Doc) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def config(docs: list[Doc]) -> dict[str, str]:
    """The data of the generated `ctc-config` ConfigMap."""
    (doc,) = [
        d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"].startswith("ctc-config")
    ]
    data: dict[str, str] = doc["data"]
    return data


def env_of(container: Doc) -> dict[str, Doc]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def worker_broker(workload: Doc) -> str | None:
    labels = pod_labels(workload)
    if labels.get("app.kubernetes.io/component") != "worker":
        return None
    return labels["broker"]


def service_workloads(docs: list[Doc]) -> list[Doc]:
    return [w for w in workloads(docs) if w["metadata"]["name"] not in TEST_TOOLS]


def secret_refs(workload: Doc) -> Iterator[tuple[str, str | None]]:
    """(Secret name, key or None for a whole-Secret envFrom) of every Secret a pod reads."""
    for container in containers(workload):
        for entry in container.get("env", []):
            ref = entry.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                yield ref["name"], ref["key"]
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                yield source["secretRef"]["name"], None
    for volume in workload["spec"]["template"]["spec"].get("volumes", []):
        if "secret" in volume:
            yield volume["secret"]["secretName"], None


# --- builds and schemas ------------------------------------------------------------------------


def test_builds_are_complete(docs: list[Doc]) -> None:
    keys = [(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in docs]
    assert len(keys) == len(set(keys)), "a resource appears twice"
    names = {(kind, name) for kind, _, name in keys}
    for kind, name in [
        ("Deployment", "hub"),
        ("Service", "hub"),
        ("Ingress", "hub"),
        ("Deployment", "worker-paper"),
        ("Deployment", "worker-deriv"),
        ("ScaledObject", "worker-paper"),
        ("ScaledObject", "worker-deriv"),
        ("Deployment", "reaper"),
        ("StatefulSet", "redis"),
        ("Service", "redis"),
        ("PodDisruptionBudget", "hub"),
        ("PodDisruptionBudget", "worker-paper"),
        ("PodDisruptionBudget", "worker-deriv"),
        ("PodDisruptionBudget", "reaper"),
        ("PodDisruptionBudget", "redis"),
    ]:
        assert (kind, name) in names, (kind, name)
    for doc in docs:
        labels = doc["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/part-of") == "cloud-trade-copier", doc["kind"]


def test_builtin_kinds_validate(docs: list[Doc]) -> None:
    checked = 0
    for doc in docs:
        if doc["apiVersion"].startswith("keda.sh/"):
            continue
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {e.message} at {list(e.path)}")
        checked += 1
    assert checked >= 15


def test_the_validator_rejects_broken_manifests(example: list[Doc]) -> None:
    """Its negative control: strict validation refuses an unknown field and a wrong type."""
    hub = copy.deepcopy(named(example, "Deployment", "hub"))
    typo = copy.deepcopy(hub)
    typo["spec"]["template"]["spec"]["containers"][0]["readynessProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, K8S_VERSION, strict=True)
    wrong = copy.deepcopy(hub)
    wrong["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong, K8S_VERSION, strict=True)


def test_scaledobjects_match_the_keda_schema(docs: list[Doc], keda_schema: dict[str, Any]) -> None:
    scaled = of_kind(docs, "ScaledObject")
    assert len(scaled) == 2
    validator = jsonschema.Draft202012Validator(keda_schema)
    for doc in scaled:
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]
        assert errors == [], (doc["metadata"]["name"], errors)


def _break_field(doc: Doc) -> None:
    doc["spec"]["minReplicas"] = doc["spec"].pop("minReplicaCount")


def _drop_target_name(doc: Doc) -> None:
    del doc["spec"]["scaleTargetRef"]["name"]


def _drop_list_name(doc: Doc) -> None:
    del doc["spec"]["triggers"][0]["metadata"]["listName"]


def _number_not_string(doc: Doc) -> None:
    doc["spec"]["triggers"][0]["metadata"]["listLength"] = 4


def _drop_sentinel_master(doc: Doc) -> None:
    del doc["spec"]["triggers"][0]["metadata"]["sentinelMaster"]


def _misspell_metadata(doc: Doc) -> None:
    meta = doc["spec"]["triggers"][0]["metadata"]
    meta["listname"] = meta.pop("listName")


def _drop_query(doc: Doc) -> None:
    del doc["spec"]["triggers"][1]["metadata"]["query"]


def _no_triggers(doc: Doc) -> None:
    doc["spec"]["triggers"] = []


def _bad_policy(doc: Doc) -> None:
    behavior = doc["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    behavior["scaleDown"]["policies"][0]["type"] = "Replicas"


@pytest.mark.parametrize(
    "mutate",
    [
        _break_field,
        _drop_target_name,
        _drop_list_name,
        _number_not_string,
        _drop_sentinel_master,
        _misspell_metadata,
        _drop_query,
        _no_triggers,
        _bad_policy,
    ],
)
def test_the_keda_schema_rejects(
    mutate: Any, example: list[Doc], keda_schema: dict[str, Any]
) -> None:
    doc = copy.deepcopy(named(example, "ScaledObject", "worker-paper"))
    jsonschema.validate(doc, keda_schema)
    mutate(doc)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, keda_schema)


# --- processes ---------------------------------------------------------------------------------


def test_every_container_has_resources(docs: list[Doc]) -> None:
    for workload in workloads(docs):
        for container in containers(workload):
            resources = container.get("resources", {})
            where = (workload["metadata"]["name"], container["name"])
            assert {"cpu", "memory"} <= set(resources.get("requests", {})), where
            assert {"cpu", "memory"} <= set(resources.get("limits", {})), where


def test_http_containers_have_readiness_on_a_declared_port(docs: list[Doc]) -> None:
    for workload in workloads(docs):
        for container in containers(workload, init=False):
            ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
            where = (workload["metadata"]["name"], container["name"])
            if not ports:
                continue
            assert "readinessProbe" in container, where
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                probe = container.get(kind, {})
                for action in ("httpGet", "tcpSocket"):
                    if action in probe:
                        assert probe[action]["port"] in ports, (where, kind)


def test_hub(docs: list[Doc]) -> None:
    hub = named(docs, "Deployment", "hub")
    (container,) = containers(hub)
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    env = env_of(container)
    assert env["HOST"]["value"] == "0.0.0.0"
    assert config(docs)["FORWARDED_ALLOW_IPS"], "the hub must trust the ingress' forwarded headers"
    args = container["args"]
    assert container["command"] == ["uvicorn"] and args[0] == "signal_hub.app:app"
    assert args[args.index("--forwarded-allow-ips") + 1] == "$(FORWARDED_ALLOW_IPS)"
    assert args[args.index("--port") + 1] == "$(PORT)" and env["PORT"]["value"] == "8000"
    assert hub["spec"]["replicas"] >= 2


def test_ingress_routes_socketio_with_cookie_affinity(docs: list[Doc]) -> None:
    ingress = named(docs, "Ingress", "hub")
    notes = ingress["metadata"]["annotations"]
    assert notes["nginx.ingress.kubernetes.io/affinity"] == "cookie"
    assert notes["nginx.ingress.kubernetes.io/session-cookie-name"]
    paths = {
        p["path"]: p["backend"]["service"]
        for rule in ingress["spec"]["rules"]
        for p in rule["http"]["paths"]
    }
    assert {"/api", "/socket.io"} <= set(paths)
    assert "/" not in paths and "/metrics" not in paths, "metrics stay inside the cluster"
    services = {s["metadata"]["name"]: s for s in of_kind(docs, "Service")}
    for backend in paths.values():
        ports = {p["name"] for p in services[backend["name"]]["spec"]["ports"]}
        assert backend["port"]["name"] in ports


def test_services_select_pods_with_their_target_ports(docs: list[Doc]) -> None:
    for service in of_kind(docs, "Service"):
        selector = service["spec"]["selector"]
        matched = [w for w in workloads(docs) if selects(selector, pod_labels(w))]
        assert len(matched) == 1, service["metadata"]["name"]
        ports = {p["name"] for c in containers(matched[0], init=False) for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, (service["metadata"]["name"], port)


def test_workers(docs: list[Doc]) -> None:
    brokers = config(docs)["BROKERS"].split(",")
    procfile = (ROOT / "Procfile").read_text()
    pools = {b: w for w in workloads(docs) if (b := worker_broker(w))}
    assert sorted(pools) == sorted(brokers)
    for broker, workload in pools.items():
        assert workload["metadata"]["name"] == f"worker-{broker}"
        assert f"worker_{broker}: rq worker-pool broker.{broker} " in procfile
        (container,) = containers(workload)
        assert [*container["command"], *container["args"]] == [
            "rq",
            "worker-pool",
            f"broker.{broker}",
            "-n",
            "1",
            "-w",
            "broker_workers.worker.BrokerWorker",
            "--connection-class",
            "core.connections.RQRedis",
            "-u",
            "$(REDIS_URL)",
        ]
        grace = workload["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace >= longest_handover_s(), (grace, longest_handover_s())
        assert "replicas" not in workload["spec"], "KEDA owns a pool's replicas"
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"metrics": 9100}
        assert env_of(container)["METRICS_PORT"]["value"] == "9100"


# What a worker's SIGTERM may still wait for after recording its batch: the record written
# with retries (``drain._with_retries``: ~3.5 s of pauses, each call with redis-py's own), the
# release and the hand-over's drain job, the runtime closing its sessions (a websocket close of
# 2 s each, then a 5 s join), and RQ's pool noticing (1 s).
RECORDING_S = 5
CLOSING_S = 10


def longest_handover_s() -> float:
    """A SIGTERMed worker's longest hand-over, from the code's own bounds (broker_workers/drain.py):
    balances are waited for until the signal's deadline, purchases retried until it with one
    reply timeout after, and a stopping worker reconciles no more. The deadline is a channel's
    ``max_signal_delay_ms``, at most the API's upper bound."""
    max_delay = next(
        m.le for m in ChannelIn.model_fields["max_signal_delay_ms"].metadata if hasattr(m, "le")
    )
    reply_timeout = DerivSettings.__dataclass_fields__["reply_timeout_s"].default
    return float(max_delay / 1000 + reply_timeout + RECORDING_S + CLOSING_S)


def test_reaper_runs_twice(docs: list[Doc]) -> None:
    reaper = named(docs, "Deployment", "reaper")
    assert reaper["spec"]["replicas"] == 2
    (container,) = containers(reaper)
    assert container["command"] == ["python", "-m", "broker_workers.reaper"]
    # its own /metrics (ctc_reaper_actions_total), kept by the ctc-workers scrape job
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"metrics": 9100}
    assert env_of(container)["METRICS_PORT"]["value"] == "9100"


def test_scaledobjects_scale_their_pool_on_its_queue_and_work(docs: list[Doc]) -> None:
    deployments = {d["metadata"]["name"]: d for d in of_kind(docs, "Deployment")}
    settings = config(docs)
    for scaled in of_kind(docs, "ScaledObject"):
        spec = scaled["spec"]
        target = deployments[spec["scaleTargetRef"]["name"]]
        assert spec["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
        broker = worker_broker(target)
        assert broker is not None, "only worker pools are autoscaled"
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"], "never scale to zero"
        assert spec["minReplicaCount"] <= spec["fallback"]["replicas"] <= spec["maxReplicaCount"]
        by_type = {t["type"]: t["metadata"] for t in spec["triggers"]}
        assert set(by_type) == {"redis-sentinel", "prometheus"}
        queue = by_type["redis-sentinel"]
        assert queue["listName"] == f"rq:queue:broker.{broker}"
        assert queue["sentinelMaster"] == settings["REDIS_URL"].rsplit("/", 1)[1]
        assert queue["addressesFromEnv"] in settings, "KEDA reads it from the target's env"
        work = by_type["prometheus"]
        assert re.search(rf'ctc_pending_work\{{broker="{broker}"\}}', work["query"])
        assert matcher_problems(work["query"]) == []
        assert float(work["threshold"]) > 0


def test_redis_is_reached_through_sentinel(docs: list[Doc]) -> None:
    settings = config(docs)
    redis = named(docs, "StatefulSet", "redis")
    assert redis["spec"]["replicas"] == 3
    service = redis["spec"]["serviceName"]
    assert named(docs, "Service", service)["spec"]["clusterIP"] == "None"
    url = re.fullmatch(r"redis\+sentinel://([^/]+)/(\d+)/(\w+)", settings["REDIS_URL"])
    assert url is not None, settings["REDIS_URL"]
    pods = [f"redis-{i}.{service}:26379" for i in range(3)]
    assert url.group(1).split(",") == pods
    namespaces = {d["metadata"].get("namespace") for d in docs} - {None}
    for namespace in namespaces:  # KEDA's operator resolves these from its own namespace
        expected = [f"redis-{i}.{service}.{namespace}.svc.cluster.local:26379" for i in range(3)]
        assert settings["KEDA_REDIS_SENTINEL_ADDRESSES"].split(",") == expected


def test_app_env_is_production(docs: list[Doc]) -> None:
    assert config(docs)["APP_ENV"] == "production"
    for workload in service_workloads(docs):
        for container in containers(workload):
            assert "APP_ENV" not in env_of(container), workload["metadata"]["name"]


def test_config_maps_referenced_exist(docs: list[Doc]) -> None:
    maps = {d["metadata"]["name"] for d in of_kind(docs, "ConfigMap")}
    for workload in workloads(docs):
        for container in containers(workload):
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in maps
        for volume in workload["spec"]["template"]["spec"].get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in maps


# --- security ----------------------------------------------------------------------------------


def test_pods_are_restricted(docs: list[Doc]) -> None:
    """Pod Security Admission's `restricted` profile, plus a read-only root filesystem and no
    service-account token."""
    allowed_volumes = {"emptyDir", "configMap", "secret", "persistentVolumeClaim", "projected"}
    for workload in workloads(docs):
        name = workload["metadata"]["name"]
        spec = workload["spec"]["template"]["spec"]
        assert spec["automountServiceAccountToken"] is False, name
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] > 0, name
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", name
        assert not spec.get("hostNetwork") and not spec.get("hostPID"), name
        for volume in spec.get("volumes", []):
            assert set(volume) - {"name"} <= allowed_volumes, (name, volume)
        for container in containers(workload):
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, (name, container["name"])
            assert sc["readOnlyRootFilesystem"] is True, (name, container["name"])
            assert sc["capabilities"]["drop"] == ["ALL"], (name, container["name"])
            assert "add" not in sc["capabilities"] and not sc.get("privileged")
            assert not any(p.get("hostPort") for p in container.get("ports", []))


def test_secrets_come_only_from_secret_references(docs: list[Doc]) -> None:
    for doc in of_kind(docs, "ConfigMap"):
        leaked = [key for key in doc["data"] if SECRET_LIKE.search(key)]
        assert leaked == [], (doc["metadata"]["name"], leaked)
    for workload in workloads(docs):
        for container in containers(workload):
            for entry in container.get("env", []):
                if SECRET_LIKE.search(entry["name"]):
                    assert "secretKeyRef" in entry.get("valueFrom", {}), entry["name"]
        refs = set(secret_refs(workload))
        if workload["metadata"]["name"] in TEST_TOOLS:
            assert refs == set(), "a test tool holds no secret"
        elif workload["metadata"]["name"] == "hub":
            assert {key for _, key in refs} == set(SECRET_NAMES)
        elif worker_broker(workload) or workload["metadata"]["name"] == "reaper":
            # Each process is given the secrets it reads: workers and the reaper open broker
            # credentials, and never reach the store nor sign a token.
            assert {key for _, key in refs} == set(WORKER_SECRETS), workload["metadata"]["name"]


def test_base_carries_no_secret(base: list[Doc]) -> None:
    assert of_kind(base, "Secret") == []
    names = {name for w in workloads(base) for name, _ in secret_refs(w)}
    assert names == {"ctc-secrets"}


def test_example_secrets_exist_and_are_fake(example: list[Doc]) -> None:
    secrets = {d["metadata"]["name"]: d for d in of_kind(example, "Secret")}
    for workload in workloads(example):
        for name, key in secret_refs(workload):
            assert name in secrets, name
            assert key is None or key in secrets[name]["data"], (name, key)
    (secret,) = secrets.values()
    values = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert set(values) == set(SECRET_NAMES)
    assert "FAKE" in values["JWT_SECRET"] and len(values["JWT_SECRET"].encode()) >= 32
    assert "FAKE" in values["MONGODB_URL"] and ".invalid" in values["MONGODB_URL"]
    assert "replicaSet=" in values["MONGODB_URL"]
    fernet = base64.urlsafe_b64decode(values["BROKER_CREDENTIALS_KEY"])
    assert len(fernet) == 32 and fernet.startswith(b"FAKE"), (
        "a well-formed Fernet key, visibly fake"
    )


def test_images(example: list[Doc], base: list[Doc]) -> None:
    for workload in workloads(example):
        for container in containers(workload):
            image = container["image"]
            repository, _, tag = image.rpartition(":")
            assert repository and tag and tag != "latest", image
            if container["name"] not in {"redis", "sentinel", "config"}:
                assert repository == APP_IMAGE, image
    base_images = {c["image"] for w in workloads(base) for c in containers(w)}
    assert "cloud-trade-copier" in base_images, "the base names the image the overlay sets"


def test_deriv_simulator_only_in_the_example(base: list[Doc], example: list[Doc]) -> None:
    assert [d for d in base if "deriv-sim" in d["metadata"]["name"]] == []
    sim = named(example, "Deployment", "deriv-sim")
    assert config(example)["DERIV_WS_URL"].startswith("ws://deriv-sim:")
    assert containers(sim)[0]["ports"][0]["containerPort"] == 8765


# --- availability ------------------------------------------------------------------------------


def test_disruption_budgets_select_their_workloads(docs: list[Doc]) -> None:
    covered = set()
    for pdb in of_kind(docs, "PodDisruptionBudget"):
        selector = pdb["spec"]["selector"]["matchLabels"]
        matched = [w for w in workloads(docs) if selects(selector, pod_labels(w))]
        assert len(matched) == 1, pdb["metadata"]["name"]
        assert matched[0]["spec"]["selector"]["matchLabels"] == selector
        assert pdb["spec"].get("maxUnavailable") == 1 or pdb["spec"].get("minAvailable")
        covered.add(matched[0]["metadata"]["name"])
    expected = {w["metadata"]["name"] for w in service_workloads(docs)}
    assert covered == expected


def test_selectors_match_templates(docs: list[Doc]) -> None:
    for workload in workloads(docs):
        assert selects(workload["spec"]["selector"]["matchLabels"], pod_labels(workload))


def test_network_policies_select_pods_and_ports(docs: list[Doc]) -> None:
    for policy in of_kind(docs, "NetworkPolicy"):
        selector = policy["spec"]["podSelector"]["matchLabels"]
        matched = [w for w in workloads(docs) if selects(selector, pod_labels(w))]
        assert matched, policy["metadata"]["name"]
        for workload in matched:
            ports = {p["name"] for c in containers(workload) for p in c.get("ports", [])}
            for rule in policy["spec"]["ingress"]:
                for port in rule["ports"]:
                    assert port["port"] in ports, (policy["metadata"]["name"], port)


def test_scrape_config_matches_the_pods(docs: list[Doc]) -> None:
    """infra/monitoring/prometheus.yml keeps hub pods by their `http` port and worker pods by
    their `metrics` port, in the namespace the example deploys to."""
    scrape = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    namespaces = {d["metadata"].get("namespace") for d in docs} - {None}
    for job in scrape["scrape_configs"]:
        assert namespaces <= set(job["kubernetes_sd_configs"][0]["namespaces"]["names"])
    hub = named(docs, "Deployment", "hub")
    assert [p["name"] for p in containers(hub)[0]["ports"]] == ["http"]
    for workload in workloads(docs):
        if worker_broker(workload):
            assert [p["name"] for p in containers(workload)[0]["ports"]] == ["metrics"]


def test_the_dockerfile_makes_the_image_the_manifests_run(example: list[Doc]) -> None:
    """The root Dockerfile (not built here: no container engine on this machine) installs every
    package the project ships, puts the commands the pods run on PATH, runs as the uid the pods
    run as, and carries the web app where ``FRONTEND_DIR`` points; its ignore file keeps none of
    what it copies out."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    ignored = {
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip()
    }
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = project["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = re.findall(r"^COPY (?!--from)(\S+)", dockerfile, re.MULTILINE)
    for package in packages:
        assert f"{package.rstrip('*')}/" in copied, package
    assert not {c.rstrip("/") for c in copied} & ignored, "COPY of an ignored path"
    assert "RUN pip install .\n" in dockerfile
    assert re.search(r"^ENV PATH=/opt/venv/bin:\$PATH", dockerfile, re.MULTILINE)
    assert "FRONTEND_DIR=/app/frontend/dist" in dockerfile
    assert "COPY --from=web /web/dist /app/frontend/dist" in dockerfile
    (user,) = re.findall(r"^USER (\d+):(\d+)$", dockerfile, re.MULTILINE)
    commands = set()
    for workload in workloads(example):
        pod = workload["spec"]["template"]["spec"]
        if any(c["image"].startswith(APP_IMAGE) for c in containers(workload)):
            assert str(pod["securityContext"]["runAsUser"]) == user[0]
            commands |= {c["command"][0] for c in containers(workload)}
    assert commands == {"uvicorn", "rq", "python"}, commands
