"""infra/monitoring/, offline: the alert rules through promtool (syntax and their unit tests), the
example Prometheus configuration, and the Grafana dashboard and its provisioning.

Every expression (rules, dashboard panels, KEDA's queries in tests/test_k8s_manifests.py) may name
only the metrics issue 15 defines (``METRICS``) or prometheus-client's default process metrics,
with the labels each one carries: a typo in a metric or label name is a panel that stays empty
or an alert that never fires, and nothing else would say so.

promtool comes from Debian's ``prometheus`` package; without it the promtool tests skip.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
MONITORING = ROOT / "infra" / "monitoring"
ALERTS = MONITORING / "alerts.yml"
ALERTS_TEST = MONITORING / "alerts_test.yml"
PROMETHEUS_CONFIG = MONITORING / "prometheus.yml"
DASHBOARD = MONITORING / "dashboards" / "cloud-trade-copier.json"
DATASOURCES = MONITORING / "provisioning" / "datasources" / "prometheus.yaml"
DASHBOARD_PROVIDERS = MONITORING / "provisioning" / "dashboards" / "ctc.yaml"

# Issue 15's metrics: name -> (type, labels). Histograms are queried through their _bucket, _sum
# and _count series.
METRICS: dict[str, tuple[str, frozenset[str]]] = {
    "ctc_copy_latency_seconds": ("histogram", frozenset({"broker"})),
    "ctc_signal_ack_seconds": ("histogram", frozenset()),
    "ctc_signals_total": ("counter", frozenset({"outcome", "reason"})),
    "ctc_executions_total": ("counter", frozenset({"broker", "status", "reason"})),
    "ctc_settlements_total": ("counter", frozenset({"broker", "outcome"})),
    "ctc_pending_work": ("gauge", frozenset({"broker"})),
    "ctc_rq_queue_length": ("gauge", frozenset({"broker"})),
    "ctc_workers_live": ("gauge", frozenset({"broker"})),
    "ctc_subscribers": ("gauge", frozenset({"broker"})),
    "ctc_results_lag_entries": ("gauge", frozenset()),
    "ctc_results_lag_seconds": ("gauge", frozenset()),
    "ctc_reaper_actions_total": ("counter", frozenset({"kind"})),
    "ctc_broker_calls_total": ("counter", frozenset({"broker", "call", "outcome"})),
    "ctc_broker_call_seconds": ("histogram", frozenset({"broker", "call"})),
    "ctc_rate_limit_waits_total": ("counter", frozenset({"broker"})),
    "ctc_broker_reconnects_total": ("counter", frozenset({"broker"})),
}
# The values a matcher may compare these labels with exactly (CONTRACT.md's statuses, issue 15).
LABEL_VALUES: dict[tuple[str, str], frozenset[str]] = {
    ("ctc_executions_total", "status"): frozenset({"placed", "rejected", "skipped", "failed"}),
    ("ctc_signals_total", "outcome"): frozenset({"accepted", "refused", "cancelled", "scheduled"}),
    ("ctc_settlements_total", "outcome"): frozenset({"won", "lost", "refund"}),
    ("ctc_broker_calls_total", "outcome"): frozenset({"ok", "error", "timeout"}),
    ("ctc_reaper_actions_total", "kind"): frozenset(
        {"recovered", "reconciled", "expired", "redriven"}
    ),
}
# prometheus-client's default collectors (process and platform/GC).
CLIENT_DEFAULTS = frozenset(
    {
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
        "python_gc_objects_collected_total",
        "python_gc_objects_uncollectable_total",
        "python_gc_collections_total",
        "python_info",
    }
)
# Labels Prometheus attaches to every series of a target (infra/monitoring/prometheus.yml).
TARGET_LABELS = frozenset({"job", "instance", "namespace", "pod", "component", "pool"})

PROMQL_WORDS = frozenset(
    {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "atan2",
        "Inf",
        "NaN",
        "inf",
        "nan",
    }
)


def series_names() -> dict[str, str]:
    """Every series name an expression may select, mapped to the metric it belongs to."""
    names = {name: name for name in CLIENT_DEFAULTS}
    for name, (kind, _) in METRICS.items():
        if kind == "histogram":
            for suffix in ("_bucket", "_sum", "_count"):
                names[name + suffix] = name
        else:
            names[name] = name
    return names


def _strip(expr: str) -> str:
    """The expression without strings, label matchers, ranges, grouping clauses and numbers."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"'(?:[^'\\]|\\.)*'", "''", e)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    return re.sub(r"(?<![\w:$])\d+(?:\.\d+)?(?:[eE][+-]?\d+|ms|s|m|h|d|w|y)?(?![\w:])", " 0 ", e)


def metric_names(expr: str) -> set[str]:
    """Identifiers of ``expr`` that select series: not functions, keywords or label names."""
    stripped = _strip(expr)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", stripped):
        word = match.group(0)
        if stripped[match.end() :].lstrip().startswith("("):
            continue  # a function or an aggregation
        if word not in PROMQL_WORDS:
            names.add(word)
    return names


def matcher_problems(expr: str, extra_names: frozenset[str] = frozenset()) -> list[str]:
    """Metrics outside issue 15's list, labels a metric does not carry, values it never takes."""
    known = series_names()
    problems = [
        f"unknown metric {name!r}"
        for name in sorted(metric_names(expr))
        if name not in known and name not in extra_names
    ]
    for match in re.finditer(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^}]*)\}", expr):
        metric = known.get(match.group(1))
        if metric is None or metric in CLIENT_DEFAULTS:
            continue
        labels = METRICS[metric][1] | TARGET_LABELS | {"le"}
        for label, op, value in re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"', match.group(2)):
            if label not in labels:
                problems.append(f"{metric} has no label {label!r}")
            allowed = LABEL_VALUES.get((metric, label))
            if allowed is not None and op in ("=", "!=") and value not in allowed:
                problems.append(f"{metric}{{{label}}} never takes the value {value!r}")
    return problems


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed (Debian's `prometheus` package ships it)")
    return path


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def load_yaml(path: Path) -> Any:
    with path.open() as f:
        return yaml.safe_load(f)


def rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    with DASHBOARD.open() as f:
        data: dict[str, Any] = json.load(f)
    return data


def all_panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for panel in panels:
        out.append(panel)
        out.extend(all_panels(panel.get("panels", [])))
    return out


def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, expression) of every query of the dashboard."""
    return [
        (panel["title"], target["expr"])
        for panel in all_panels(dashboard()["panels"])
        for target in panel.get("targets", [])
    ]


def as_promql(expr: str) -> str:
    """A Grafana query as plain PromQL: its variables replaced by what Grafana would put there."""
    return expr.replace("$__rate_interval", "1m").replace("$broker", ".*")


# --- the rules ---------------------------------------------------------------------------------


def test_rules_pass_promtool_check(promtool: str) -> None:
    result = run([promtool, "check", "rules", str(ALERTS)], MONITORING)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_unit_tests_pass(promtool: str) -> None:
    result = run([promtool, "test", "rules", ALERTS_TEST.name], MONITORING)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_fires_in_a_unit_test() -> None:
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    fired = {
        case["alertname"]
        for test in load_yaml(ALERTS_TEST)["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert alerts - fired == set(), f"alerts no unit test fires: {sorted(alerts - fired)}"
    assert fired - alerts == set(), f"unit tests of alerts that do not exist: {fired - alerts}"


def test_issue_15_alerts_exist() -> None:
    alerts = {rule["alert"]: rule for rule in rules() if "alert" in rule}
    for name in (
        "CtcCopyLatencyP99High",
        "CtcCopyFailedShareHigh",
        "CtcCopyExpiredShareHigh",
        "CtcResultsLagOld",
        "CtcResultsLagGrowing",
        "CtcNoLiveWorker",
        "CtcReaperRecoveringClaims",
    ):
        assert name in alerts, name
    assert alerts["CtcCopyLatencyP99High"]["for"] == "5m"
    assert alerts["CtcNoLiveWorker"]["for"] == "1m"


def test_alerts_have_severity_and_words() -> None:
    for rule in rules():
        if "alert" not in rule:
            continue
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert rule["annotations"]["description"].strip(), rule["alert"]


def test_rules_name_only_known_metrics() -> None:
    recorded = frozenset(rule["record"] for rule in rules() if "record" in rule)
    for rule in rules():
        problems = matcher_problems(rule["expr"], recorded | {"up"})
        assert problems == [], (rule.get("alert") or rule.get("record"), problems)


def test_recorded_names_follow_the_convention() -> None:
    for rule in rules():
        if "record" in rule:
            assert re.fullmatch(r"[a-z_]+:ctc_[a-z_]+:[a-z0-9_]+", rule["record"]), rule["record"]


def test_metric_name_check_catches_typos() -> None:
    assert matcher_problems('rate(ctc_execution_total{status="failed"}[5m])') == [
        "unknown metric 'ctc_execution_total'"
    ]
    assert matcher_problems('sum(rate(ctc_broker_calls_total{result="error"}[1m]))') == [
        "ctc_broker_calls_total has no label 'result'"
    ]
    assert matcher_problems('ctc_executions_total{status="expired"}') == [
        "ctc_executions_total{status} never takes the value 'expired'"
    ]
    assert (
        matcher_problems(
            "histogram_quantile(0.99, sum by (broker, le) (rate(ctc_copy_latency_seconds_bucket"
            '{broker=~"$broker"}[$__rate_interval]))) > 1e3'
        )
        == []
    )


# --- the Prometheus configuration --------------------------------------------------------------


def test_prometheus_config_passes_promtool(promtool: str, tmp_path: Path) -> None:
    """Debian builds Prometheus without Kubernetes service discovery, so its promtool refuses
    ``kubernetes_sd_configs``; the check runs on a copy where each is a static target. The
    relabelling, the intervals and the rule files are checked as written."""
    config = load_yaml(PROMETHEUS_CONFIG)
    for job in config["scrape_configs"]:
        assert job.pop("kubernetes_sd_configs")[0]["role"] == "pod", job["job_name"]
        job["static_configs"] = [{"targets": ["127.0.0.1:9100"]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    shutil.copy(ALERTS, tmp_path / "alerts.yml")
    result = run([promtool, "check", "config", "prometheus.yml"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_config_scrapes_hubs_and_workers() -> None:
    config = load_yaml(PROMETHEUS_CONFIG)
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"ctc-hub", "ctc-workers"}

    def kept(job: dict[str, Any], label: str) -> str:
        (rule,) = [
            r
            for r in job["relabel_configs"]
            if r.get("action") == "keep" and r["source_labels"] == [label]
        ]
        return str(rule["regex"])

    port_name = "__meta_kubernetes_pod_container_port_name"
    assert kept(jobs["ctc-hub"], port_name) == "http"
    assert kept(jobs["ctc-hub"], "__meta_kubernetes_pod_label_app_kubernetes_io_component") == "hub"
    assert kept(jobs["ctc-workers"], port_name) == "metrics"
    targets = {r.get("target_label") for job in jobs.values() for r in job["relabel_configs"]}
    assert "broker" not in targets, "a target label `broker` would shadow the metrics' own"
    assert targets - {None} <= TARGET_LABELS


# --- the dashboard and its provisioning --------------------------------------------------------


def provisioned_datasource() -> dict[str, Any]:
    (source,) = load_yaml(DATASOURCES)["datasources"]
    return {"type": source["type"], "uid": source["uid"]}


def test_provisioning_files() -> None:
    source = load_yaml(DATASOURCES)
    assert source["apiVersion"] == 1
    (ds,) = source["datasources"]
    assert ds["type"] == "prometheus" and ds["uid"] and ds["url"].startswith("http")
    providers = load_yaml(DASHBOARD_PROVIDERS)
    assert providers["apiVersion"] == 1
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")
    assert list(DASHBOARD.parent.glob("*.json")) == [DASHBOARD]


def test_dashboard_shape() -> None:
    board = dashboard()
    assert board["uid"] and board["title"] and isinstance(board["schemaVersion"], int)
    panels = all_panels(board["panels"])
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        assert panel["title"], panel["id"]
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["type"] in {"timeseries", "stat"}, panel["title"]
        assert panel["targets"], panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_dashboard_uses_only_the_provisioned_datasource() -> None:
    board = dashboard()
    expected = provisioned_datasource()
    for panel in all_panels(board["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == expected, panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", expected) == expected, panel["title"]
    for variable in board["templating"]["list"]:
        assert variable["datasource"] == expected, variable["name"]


def test_dashboard_names_only_known_metrics() -> None:
    for title, expr in dashboard_exprs():
        assert matcher_problems(expr) == [], (title, expr)
    for variable in dashboard()["templating"]["list"]:
        query = variable["query"]["query"]
        inner = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", query)
        assert inner is not None, query
        metric = series_names().get(inner.group(1))
        assert metric is not None and inner.group(2) in METRICS[metric][1], query


def test_dashboard_expressions_are_promql(promtool: str, tmp_path: Path) -> None:
    """Each panel's query, its Grafana variables substituted, parsed by promtool as a rule."""
    exprs = [as_promql(expr) for _, expr in dashboard_exprs()]
    group = {
        "name": "dashboard",
        "rules": [{"record": f"dashboard:query_{i}:check", "expr": e} for i, e in enumerate(exprs)],
    }
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [group]}))
    result = run([promtool, "check", "rules", str(path)], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_has_issue_15_panels() -> None:
    exprs = [re.sub(r"\s+", " ", expr) for _, expr in dashboard_exprs()]

    def some(*needles: str) -> bool:
        return any(all(n in expr for n in needles) for expr in exprs)

    assert some("histogram_quantile(0.5,", "ctc_copy_latency_seconds_bucket", "by (broker, le)")
    assert some("histogram_quantile(0.99,", "ctc_copy_latency_seconds_bucket", "by (broker, le)")
    assert some("rate(ctc_executions_total", "[1m]", "status")
    assert some("ctc_pending_work", "by (broker)")
    assert some("ctc_rq_queue_length", "by (broker)")
    assert some("ctc_workers_live", "by (broker)")
    assert some("ctc_results_lag_entries")
    assert some("ctc_results_lag_seconds")
    assert some('status="failed"', "/")
    assert some('reason="expired"', "/")
    assert some("ctc_broker_calls_total", 'outcome!="ok"')
    assert some("histogram_quantile(0.99,", "ctc_signal_ack_seconds_bucket")
    assert some("histogram_quantile(0.5,", "ctc_signal_ack_seconds_bucket")


def test_gauges_read_from_redis_are_never_summed() -> None:
    """Every hub reports the same figure for these: a sum would count it once per hub."""
    per_hub: tuple[str, ...] = ("ctc_pending_work", "ctc_rq_queue_length", "ctc_workers_live")
    per_hub += ("ctc_subscribers", "ctc_results_lag_entries", "ctc_results_lag_seconds")
    exprs = [expr for _, expr in dashboard_exprs()] + [rule["expr"] for rule in rules()]
    for expr in exprs:
        for gauge in per_hub:
            assert not re.search(rf"sum\b[^()]*\(\s*(?:max_over_time\()?{gauge}\b", expr), expr
