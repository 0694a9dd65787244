"""The operator's files: ops/prometheus/alerts.yml and ops/grafana/broadcasts.json name only series that GET /metrics
serves; every alert links its runbook in docs/operations.md; the dashboard's queries are valid PromQL (promtool)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.db import connection

from tests.delivery_support import PROJECT_ROOT, database_url_for

ALERTS = PROJECT_ROOT / "ops" / "prometheus" / "alerts.yml"
DASHBOARD = PROJECT_ROOT / "ops" / "grafana" / "broadcasts.json"
OPERATIONS = PROJECT_ROOT / "docs" / "operations.md"
METRIC_NAME = re.compile(r"\bmsg_[a-z0-9_]+")

# Every recorded series gets one sample in a fresh multiprocess directory (a labelled counter without one is not
# exposed at all), then the scrape is printed: the names a real GET /metrics serves, scrape-time gauges included.
_SCRAPE = """
import django
django.setup()
from prometheus_client.metrics import MetricWrapperBase
import core.metrics, core.request_metrics
from core.metrics import metrics_exposition
for module in (core.metrics, core.request_metrics):
    for metric in vars(module).values():
        if isinstance(metric, MetricWrapperBase):
            child = metric.labels(*["names-check"] * len(metric._labelnames)) if metric._labelnames else metric
            (child.observe if hasattr(child, "observe") else child.inc)(0)
print(metrics_exposition().decode())
"""


def _alerts() -> list[dict]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def _dashboard_exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel.get("targets", [])]


def _served_names(tmp_path: Path) -> set[str]:
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "DATABASE_URL": database_url_for(connection.settings_dict["NAME"]),
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    out = subprocess.run(
        [sys.executable, "-c", _SCRAPE], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    samples = {line.split("{", 1)[0].split(" ", 1)[0] for line in lines if line.startswith("msg_")}
    # A gauge family with no sample this scrape (no channel is sending) is still declared, under its own name.
    gauges = {line.split()[2] for line in lines if line.startswith("# TYPE msg_") and line.endswith(" gauge")}
    return samples | gauges


@pytest.mark.django_db
def test_every_series_named_by_the_alerts_and_the_dashboard_is_served(tmp_path):
    named = {name for rule in _alerts() for name in METRIC_NAME.findall(rule["expr"])}
    named |= {name for expr in _dashboard_exprs() for name in METRIC_NAME.findall(expr)}
    served = _served_names(tmp_path)
    # the check is not vacuous: the alerts and the dashboard name the funnel, requests and heartbeats
    assert {"msg_meta_statuses_total", "msg_http_requests_total", "msg_worker_last_seen_seconds"} <= named
    assert named - served == set(), f"not served by GET /metrics: {sorted(named - served)}"


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    anchors = set()
    for line in markdown.splitlines():
        if line.startswith("#") and not line.startswith("#!"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def test_every_alert_has_a_runbook_section_and_a_summary():
    anchors = _anchors(OPERATIONS.read_text())
    alerts = _alerts()
    assert len(alerts) >= 10
    for rule in alerts:
        url = rule["annotations"]["runbook_url"]
        assert url.startswith("docs/operations.md#"), rule["alert"]
        assert url.split("#", 1)[1] in anchors, f"{rule['alert']}: no section {url} in docs/operations.md"
        assert rule["annotations"]["summary"]
        assert rule["labels"]["severity"] in {"warning", "critical"}


@pytest.mark.promtool  # `make check-alerts` (CI installs Debian's prometheus for it); out of `make test`
def test_promtool_accepts_the_alerts_and_the_dashboards_queries(tmp_path):
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is not installed: Debian's `prometheus` package has it (.ci/run installs it)"
    assert subprocess.run([promtool, "check", "rules", str(ALERTS)], capture_output=True).returncode == 0
    # The dashboard's queries as recording rules, Grafana's variables replaced by what they expand to
    rules = []
    for i, expr in enumerate(_dashboard_exprs()):
        expr = expr.replace("$__rate_interval", "5m").replace("$__range", "6h").replace("$channel", ".*")
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
