"""The monitoring profile's files: monitoring/prometheus.yml scrapes what the compose file runs, and
every query of monitoring/grafana-dashboard.json names metrics that the API and Flower serve.

The metric names come from the real /metrics of an API built by the factory and of a Flower
started as the Procfile starts it, not from a list that could drift from them. Whether Prometheus
itself accepts the files is the compose test's to show: it runs ``promtool check config`` in the
image and every dashboard query against the running server (tests/compose/test_single_node.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from ruamel.yaml import YAML

from common.settings import Settings
from runner.services import Service

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_PATH = ROOT / "docker-compose.yml"
PROMETHEUS_CONFIG = ROOT / "monitoring" / "prometheus.yml"
DASHBOARD = ROOT / "monitoring" / "grafana-dashboard.json"
PROFILE = "monitoring"
# The path the official image's command reads its config from.
CONFIG_IN_IMAGE = "/etc/prometheus/prometheus.yml"
FLOWER_PORT = 5555
# Each demo's API and Flower, by the label the dashboard's "demo" variable picks.
DEMOS = {"single": ("api", "flower"), "cluster": ("api-cluster", "flower-cluster")}
# Series Prometheus records itself for every target, beside what the target serves.
PROMETHEUS_OWN = {"up"}
# Grafana's variables, replaced by values of their kind so that the queries parse as PromQL.
GRAFANA_VARIABLES = {"$__rate_interval": "20s", "$demo": "single"}
# The sample names a family of each type is scraped as (the family alone is listed before its
# first labelled sample exists).
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"),
            "summary": ("", "_count", "_sum"), "gauge": ("",), "unknown": ("",)}


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return YAML(typ="safe", pure=True).load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return YAML(typ="safe", pure=True).load(COMPOSE_PATH.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows too."""
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the dashboard, with Grafana's variables filled in."""
    expressions = [target["expr"] for panel in panels(dashboard)
                   for target in panel.get("targets", [])]
    filled = []
    for expression in expressions:
        for variable, value in GRAFANA_VARIABLES.items():
            expression = expression.replace(variable, value)
        filled.append(expression)
    return filled


def selectors(expression: str) -> list[promql_parser.VectorSelector]:
    found: list[promql_parser.VectorSelector] = []

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)

    promql_parser.walk(promql_parser.parse(expression), visit)
    return found


def served(text: str) -> set[str]:
    """The sample names a /metrics page serves or will serve."""
    names = set()
    for family in text_string_to_metric_families(text):
        names |= {family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))}
        names |= {sample.name for sample in family.samples}
    return names


# --- monitoring/prometheus.yml and its service ----------------------------------------------------


def test_prometheus_is_in_a_profile_of_its_own_with_its_config_read_only(
    compose: dict[str, Any],
) -> None:
    prometheus = compose["services"]["prometheus"]
    # A plain `docker compose up` stays as light as the course's.
    assert prometheus["profiles"] == [PROFILE]
    assert prometheus["image"].startswith("prom/prometheus:v2.")
    assert prometheus["ports"] == ["${PROMETHEUS_HOST_PORT:-9090}:9090"]
    [mount] = prometheus["volumes"]
    assert mount == {"type": "bind", "source": "./monitoring/prometheus.yml",
                     "target": CONFIG_IN_IMAGE, "read_only": True}


def test_prometheus_scrapes_every_api_replica_and_flower_of_each_demo(
    config: dict[str, Any], compose: dict[str, Any]
) -> None:
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    api_port = Settings().api_port
    for demo, (api, flower) in DEMOS.items():
        assert {api, flower} <= set(compose["services"]), demo
        # Each replica is a target of its own: the name resolves to every replica's address.
        [lookup] = jobs[api]["dns_sd_configs"]
        assert (lookup["names"], lookup["type"], lookup["port"]) == ([api], "A", api_port)
        # Flower's own port in its container, whatever the host publishes.
        assert compose["services"][flower]["ports"][0].endswith(f":{FLOWER_PORT}")
        flower_job = jobs[flower]
        if "static_configs" in flower_job:
            [group] = flower_job["static_configs"]
            assert group["targets"] == [f"{flower}:{FLOWER_PORT}"]
            assert group["labels"] == {"demo": demo}
        else:
            [lookup] = flower_job["dns_sd_configs"]
            assert (lookup["names"], lookup["port"]) == ([flower], FLOWER_PORT)
        for name in (api, flower):
            for rule in jobs[name].get("relabel_configs", []):
                assert (rule["target_label"], rule["replacement"]) == ("demo", demo), name
    # The single-node demo's services are the ones a plain `up` starts.
    assert set(jobs) == {name for pair in DEMOS.values() for name in pair}


# --- monitoring/grafana-dashboard.json ----------------------------------------------------------


def test_the_dashboard_asks_for_its_prometheus_when_imported(dashboard: dict[str, Any]) -> None:
    [source] = dashboard["__inputs"]
    assert (source["name"], source["type"], source["pluginId"]) == (
        "DS_PROMETHEUS", "datasource", "prometheus")
    wanted = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    every = [dashboard["templating"]["list"][0]["datasource"]]
    for panel in panels(dashboard):
        if panel["type"] != "row":
            every += [panel["datasource"], *(target["datasource"] for target in panel["targets"])]
    assert all(datasource == wanted for datasource in every)
    # Grafana 11's model; an id of null lets the import give it one.
    assert dashboard["schemaVersion"] >= 39 and dashboard["id"] is None
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids))


def test_every_query_parses_and_keeps_to_the_chosen_demo(dashboard: dict[str, Any]) -> None:
    # Without the demo's label a panel would add the single node's figures to the cluster's.
    for expression in queries(dashboard):
        for selector in selectors(expression):
            labels = {matcher.name: matcher.value for matcher in selector.matchers.matchers}
            assert labels.get("demo") == GRAFANA_VARIABLES["$demo"], expression


@pytest.fixture(scope="module")
def flower_metrics(flower: tuple[Service, str]) -> str:
    """Flower's /metrics, as Flower runs natively (`celery -A celery_app flower`)."""
    _, url = flower
    response = requests.get(f"{url}/metrics", timeout=10)
    response.raise_for_status()
    return response.text


async def test_every_query_names_metrics_that_the_api_or_flower_serves(
    client, flower_metrics: str, dashboard: dict[str, Any]
) -> None:
    response = await client.get("/metrics")
    assert response.status == 200
    api_names = served(await response.text())
    flower_names = served(flower_metrics)
    named = {selector.name for expression in queries(dashboard)
             for selector in selectors(expression)}
    unknown = named - api_names - flower_names - PROMETHEUS_OWN
    assert not unknown, f"the dashboard names metrics nobody serves: {sorted(unknown)}"
    # Both sources are used: the dashboard is not the API's alone.
    assert named & {name for name in flower_names if name.startswith("flower_")}
    assert named & {name for name in api_names if name.startswith("api_")}
