"""The distributed deployment in ``compose/`` agrees with the code it deploys."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from brigade.settings import Settings
from cli.main import _register_subsystems, app

COMPOSE = Path(__file__).resolve().parents[2] / "compose"


def _compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())
    return document


def _brigade_services() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in _compose()["services"].items() if s.get("image") == "brigade:latest"}


def _registered_metric_names() -> set[str]:
    """Every metric name a Brigade package registers with prometheus-client."""
    root = COMPOSE.parent
    names = set()
    for package in ("ingress", "processors", "workers", "projections"):
        for path in (root / package).rglob("*.py"):
            names |= set(re.findall(r'(?:Counter|Histogram|Gauge|Summary)\(\s*"(brigade_[a-z_]+)"',
                                    path.read_text()))
    return names


def _cli_commands() -> set[str]:
    _register_subsystems()
    group = typer.main.get_group(app)
    return set(group.commands)


@pytest.mark.parametrize("service", sorted(_brigade_services()))
def test_every_brigade_service_has_valid_settings(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    environment = _brigade_services()[service]["environment"]
    for key in [k for k in __import__("os").environ if k.startswith("BRIGADE_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("BRIGADE_CONFIG", "/nonexistent/brigade.toml")
    for key, value in environment.items():
        monkeypatch.setenv(key, str(value))
    settings = Settings()
    assert settings.kafka.bootstrap == "kafka:9092"
    assert settings.clickhouse_url.startswith("http://clickhouse:")
    assert all(pool.endpoint.startswith("http://model:") for pool in settings.pools.values())


@pytest.mark.parametrize("service", sorted(_brigade_services()))
def test_every_service_runs_a_real_command(service: str) -> None:
    command = _brigade_services()[service]["command"]
    assert command[0] in _cli_commands()


def test_prometheus_scrapes_the_ports_the_processes_serve() -> None:
    scrape = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())["scrape_configs"]
    ports = {job["job_name"]: job["dns_sd_configs"][0]["port"] for job in scrape}
    services = _brigade_services()
    metrics_port = int(services["processors"]["environment"]["BRIGADE_METRICS_PORT"])
    assert ports["processors"] == ports["workers"] == ports["projector"] == metrics_port
    # The API's tenant-labelled series are scraped on its operator port, never the public one.
    api_env = {**_compose()["x-brigade"]["environment"], **services["api"]["environment"]}
    assert ports["api"] == int(api_env["BRIGADE_METRICS_PORT"]) != int(api_env["BRIGADE_API__PORT"])
    published = {str(p).split(":")[-1] for p in services["api"].get("ports", [])}
    assert str(ports["api"]) not in published
    model_port = int(services["model"]["command"][services["model"]["command"].index("--port") + 1])
    assert ports["model"] == model_port
    assert set(ports) == {"api", "processors", "workers", "projector", "model"}


def test_dashboard_queries_only_metrics_the_code_exports() -> None:
    dashboard = json.loads((COMPOSE / "grafana" / "dashboards" / "brigade.json").read_text())
    used = {
        re.sub(r"_(total|bucket|sum|count)$", "", name)
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"brigade_[a-z_]+", target["expr"])
    }
    assert used
    assert used <= _registered_metric_names()


def test_kafka_service_matches_the_embedded_broker_settings() -> None:
    kafka = _compose()["services"]["kafka"]["environment"]
    assert kafka["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller"
    image = _compose()["services"]["kafka"]["image"]
    from brigade.kafka.local import KAFKA_VERSION

    assert image == f"apache/kafka:{KAFKA_VERSION}"


def test_image_contains_every_package() -> None:
    dockerfile = (COMPOSE / "Dockerfile").read_text()
    for package in ("brigade", "schemas", "ingress", "processors", "workers", "projections"):
        assert f"COPY {package} {package}" in dockerfile


def test_tenant_panels_read_the_api_operator_port() -> None:
    dashboard = json.loads((COMPOSE / "grafana" / "dashboards" / "brigade.json").read_text())
    by_tenant = [t["expr"] for p in dashboard["panels"] for t in p["targets"] if "by (tenant)" in t["expr"]]
    assert by_tenant and all('job="api"' in expr for expr in by_tenant)
