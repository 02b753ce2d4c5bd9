"""The deployment files agree with each other and with common/, checked without a Docker engine."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
from ruamel.yaml import YAML

from common import routes, topology
from common.settings import Settings
from rmq import definitions as rmq_definitions
from runner.procfile import read_procfile

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_PATH = ROOT / "docker-compose.yml"
DOCKERFILE_PATH = ROOT / "Dockerfile"
RABBITMQ_CONF_PATH = ROOT / "rmq" / "rabbitmq.conf"
CLUSTER_CONF_PATH = ROOT / "rmq" / "cluster.conf"
DEFINITIONS_PATH = rmq_definitions.DEFINITIONS_PATH
# Tools come from requirements-dev.txt, installed next to the interpreter running the tests.
VENV_BIN = Path(sys.executable).parent

PYTHON_SERVICES = {"api", "consumer", "celery_worker", "celery_beat", "flower"}
# The services from official images, beside the Python ones.
IMAGE_SERVICES = {"rmq", "redis", "proxy"}
HAPROXY_CFG_PATH = ROOT / "proxy" / "haproxy.cfg"
# Only a native run needs these: several Celery workers on one host need distinct node names,
# and honcho starts each line through a shell. Containers have their own hostnames and no shell.
NATIVE_ONLY_PREFIX = "exec"
NATIVE_ONLY_OPTION = "--hostname="
# `${NAME:-default}`: the only form of value the Python services' environment uses.
CONFIGURABLE_VALUE = re.compile(r"\$\{(?P<name>[A-Z][A-Z0-9_]*):-(?P<default>[^${}]*)\}")
# The profile that adds the three-node cluster and a copy of each Python service that uses it.
CLUSTER_PROFILE = "cluster"
CLUSTER_NODES = ("rmq-1", "rmq-2", "rmq-3")
COPY_SUFFIX = "-cluster"
# Where a copy's value must differ from the original's, it reads CLUSTER_<NAME> from the host.
CLUSTER_VARIABLE_PREFIX = "CLUSTER_"


def run_tool(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / name), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def run_generator(
    *args: str, environ: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    # A child process with only the given variables: no RMQ_URL leaks in from the shell.
    return subprocess.run(
        [sys.executable, "-m", "rmq.definitions", *args],
        cwd=ROOT,
        env=dict(environ or {}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return YAML(typ="safe", pure=True).load(COMPOSE_PATH.read_text(encoding="utf-8"))


@pytest.fixture(scope="module", params=list(rmq_definitions.PATHS))
def queue_type(request: pytest.FixtureRequest) -> str:
    """Each committed definitions file: classic queues, and the cluster's quorum queues."""
    return request.param


@pytest.fixture(scope="module")
def definitions_path(queue_type: str) -> Path:
    return rmq_definitions.PATHS[queue_type]


@pytest.fixture(scope="module")
def committed_definitions(definitions_path: Path) -> dict[str, Any]:
    return json.loads(definitions_path.read_text(encoding="utf-8"))


def procfile_commands() -> dict[str, list[str]]:
    """Each Procfile line as the runner reads it, split into words to compare with compose."""
    return {name: shlex.split(command) for name, command in read_procfile().items()}


def without_native_only(command: list[str]) -> list[str]:
    if command and command[0] == NATIVE_ONLY_PREFIX:
        command = command[1:]
    return [arg for arg in command if not arg.startswith(NATIVE_ONLY_OPTION)]


def environment_defaults(environment: Mapping[str, str], prefixes: tuple[str, ...] = ("",)
                         ) -> dict[str, str]:
    """The values the containers get when nothing is set on the host."""
    defaults = {}
    for name, value in environment.items():
        match = CONFIGURABLE_VALUE.fullmatch(value)
        assert match, f"{name}={value!r} is not configurable as ${{{name}:-default}}"
        assert match["name"] in {prefix + name for prefix in prefixes}, (
            f"{name} is read from the host variable {match['name']}")
        defaults[name] = match["default"]
    return defaults


def read_rabbitmq_conf(path: Path) -> dict[str, str]:
    """A rabbitmq.conf as key = value pairs, comments left out."""
    return dict(
        (key.strip(), value.strip())
        for key, _, value in (
            line.partition("=")
            for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        )
    )


def bind_mounts(service: Mapping[str, Any]) -> dict[str, str]:
    """Target -> source of a service's bind mounts."""
    return {
        mount["target"]: mount["source"]
        for mount in service["volumes"]
        if isinstance(mount, dict) and mount["type"] == "bind"
    }


def services_of(compose: Mapping[str, Any], profile: str | None) -> set[str]:
    """The services `docker compose up` starts with ``profile`` alone, or with none."""
    return {
        name for name, service in compose["services"].items()
        if profile in service.get("profiles", [None])
    }


# --- the files are valid for their tools ---------------------------------------------------------


def test_compose_file_follows_the_compose_specification() -> None:
    result = run_tool(
        "check-jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE_PATH)
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_schema_check_rejects_an_invalid_file(tmp_path: Path) -> None:
    # Proves the check above can fail: a port must be a number or a string, not a mapping.
    broken = tmp_path / "docker-compose.yml"
    broken.write_text("services:\n  api:\n    image: x\n    ports: [{published: {}}]\n")
    result = run_tool("check-jsonschema", "--builtin-schema", "vendor.compose-spec", str(broken))
    assert result.returncode == 1
    assert "$.services.api.ports[0]" in result.stdout


def test_hadolint_reports_nothing() -> None:
    result = run_tool("hadolint", str(DOCKERFILE_PATH))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


# --- rmq/definitions.json ------------------------------------------------------------------------


def test_committed_definitions_are_what_the_generator_writes_now(
    committed_definitions: dict[str, Any], definitions_path: Path, queue_type: str
) -> None:
    # The salt is random; everything else, the hash included, must be regenerated byte for byte.
    [user] = committed_definitions["users"]
    settings = Settings()
    expected = rmq_definitions.build_definitions(
        settings.rmq_user,
        rmq_definitions.hash_password(
            settings.rmq_password, rmq_definitions.salt_of(user["password_hash"])
        ),
        settings.rmq_vhost,
        queue_type,
    )
    assert definitions_path.read_text(encoding="utf-8") == rmq_definitions.render(expected)


def test_regenerating_an_up_to_date_file_changes_nothing(
    tmp_path: Path, definitions_path: Path, queue_type: str
) -> None:
    copy = tmp_path / "definitions.json"
    copy.write_bytes(definitions_path.read_bytes())
    result = run_generator("--queue-type", queue_type, "--output", str(copy))
    assert result.returncode == 0, result.stderr
    assert copy.read_bytes() == definitions_path.read_bytes()


def test_generator_writes_each_queue_type_to_its_committed_file(tmp_path: Path) -> None:
    assert rmq_definitions.PATHS[topology.QUORUM].name == "definitions.quorum.json"
    result = run_generator("--queue-type", "quorum", "--output", str(tmp_path / "q.json"))
    assert result.returncode == 0, result.stderr
    queues = json.loads((tmp_path / "q.json").read_text(encoding="utf-8"))["queues"]
    assert {queue["arguments"]["x-queue-type"] for queue in queues} == {"quorum"}


def test_definitions_let_the_course_user_in_without_storing_the_password(
    committed_definitions: dict[str, Any], definitions_path: Path
) -> None:
    settings = Settings()
    [user] = committed_definitions["users"]
    assert user["name"] == settings.rmq_user
    assert user["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    assert rmq_definitions.check_password(settings.rmq_password, user["password_hash"])
    assert not rmq_definitions.check_password(settings.rmq_password + "x", user["password_hash"])
    assert "password" not in user
    assert settings.rmq_password not in definitions_path.read_text(encoding="utf-8")
    assert committed_definitions["permissions"] == [
        {
            "user": settings.rmq_user,
            "vhost": settings.rmq_vhost,
            "configure": ".*",
            "write": ".*",
            "read": ".*",
        }
    ]


def test_password_hash_matches_the_rabbitmq_documentation_example() -> None:
    # The worked example of the RabbitMQ passwords guide ("Computing Password Hash").
    salt = bytes.fromhex("908DC60A")
    assert (
        rmq_definitions.hash_password("test12", salt)
        == "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR"
    )


def test_generator_takes_credentials_from_rmq_url_when_asked(tmp_path: Path) -> None:
    output = tmp_path / "definitions.local.json"
    result = run_generator(
        "--from-env",
        "--output",
        str(output),
        environ={"RMQ_URL": "amqp://teacher:s%40cret@rmq:5672/course"},
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(output.read_text(encoding="utf-8"))
    [user] = document["users"]
    assert user["name"] == "teacher"
    assert rmq_definitions.check_password("s@cret", user["password_hash"])
    assert document["vhosts"] == [{"name": "course"}]
    assert {queue["vhost"] for queue in document["queues"]} == {"course"}


def test_definitions_hold_exactly_the_topology_of_common(
    committed_definitions: dict[str, Any], queue_type: str
) -> None:
    vhost = Settings().rmq_vhost
    assert committed_definitions["vhosts"] == [{"name": vhost}]
    sections = ("exchanges", "queues", "bindings")
    assert {
        entry["vhost"] for section in sections for entry in committed_definitions[section]
    } == {vhost}

    exchanges = [
        topology.Exchange(name=e["name"], type=e["type"], durable=e["durable"])
        for e in committed_definitions["exchanges"]
        if not e["auto_delete"] and not e["internal"] and not e["arguments"]
    ]
    queues = [
        topology.Queue(name=q["name"], arguments=q["arguments"], durable=q["durable"])
        for q in committed_definitions["queues"]
        if not q["auto_delete"]
    ]
    bindings = [
        topology.Binding(exchange=b["source"], queue=b["destination"], routing_key=b["routing_key"])
        for b in committed_definitions["bindings"]
        if b["destination_type"] == "queue" and not b["arguments"]
    ]
    assert exchanges == list(topology.EXCHANGES)
    assert queues == list(topology.queues(queue_type))
    assert bindings == list(topology.BINDINGS)


# --- rmq service ---------------------------------------------------------------------------------


def test_broker_loads_the_generated_definitions(compose: dict[str, Any]) -> None:
    conf = read_rabbitmq_conf(RABBITMQ_CONF_PATH)
    assert conf["management.tcp.port"] == "15672"
    mounts = bind_mounts(compose["services"]["rmq"])
    assert mounts["/etc/rabbitmq/rabbitmq.conf"] == "./rmq/rabbitmq.conf"
    definitions_source = CONFIGURABLE_VALUE.fullmatch(mounts[conf["load_definitions"]])
    assert definitions_source is not None
    assert (ROOT / definitions_source["default"]).resolve() == DEFINITIONS_PATH


def test_default_credentials_of_the_services_log_in_to_the_broker(
    compose: dict[str, Any], committed_definitions: dict[str, Any]
) -> None:
    # RABBITMQ_DEFAULT_USER/PASS would be ignored next to definitions; only the file decides.
    assert not set(compose["services"]["rmq"].get("environment") or {}) & {
        "RABBITMQ_DEFAULT_USER",
        "RABBITMQ_DEFAULT_PASS",
    }
    [user] = committed_definitions["users"]
    for name in PYTHON_SERVICES:
        environment = environment_defaults(compose["services"][name]["environment"])
        settings = Settings.from_env(environment)
        assert settings.rmq_user == user["name"], name
        assert rmq_definitions.check_password(settings.rmq_password, user["password_hash"]), name
        assert settings.rmq_vhost in {vhost["name"] for vhost in committed_definitions["vhosts"]}


# --- Python services: compose, Procfile, Dockerfile and settings agree ---------------------------


def test_compose_runs_the_procfile_services_with_the_same_commands(
    compose: dict[str, Any],
) -> None:
    procfile = procfile_commands()
    assert set(procfile) == PYTHON_SERVICES
    assert services_of(compose, None) == PYTHON_SERVICES | IMAGE_SERVICES
    for name, command in procfile.items():
        assert compose["services"][name]["command"] == without_native_only(command), name


def test_python_services_read_only_variables_that_settings_knows(
    compose: dict[str, Any],
) -> None:
    known = set(Settings.env_names())
    for name in PYTHON_SERVICES:
        environment = compose["services"][name]["environment"]
        assert set(environment) <= known, name
        # Every default is one the services accept.
        Settings.from_env(environment_defaults(environment))


def test_workers_report_to_the_path_the_api_serves(compose: dict[str, Any]) -> None:
    # The compose file cannot import common/routes.py: its API_URL spells the callback's path.
    for name in PYTHON_SERVICES:
        for service in (name, name + COPY_SUFFIX):
            environment = environment_defaults(compose["services"][service]["environment"],
                                               ("", CLUSTER_VARIABLE_PREFIX))
            callback_url = Settings.from_env(environment).callback_url
            assert urlsplit(callback_url).path == routes.CALLBACK, service


def test_python_services_share_one_image(compose: dict[str, Any]) -> None:
    services = [compose["services"][name] for name in sorted(PYTHON_SERVICES)]
    assert {(service["build"], service["image"]) for service in services} == {
        (".", services[0]["image"])
    }


def test_workers_can_be_scaled(compose: dict[str, Any]) -> None:
    for name in ("consumer", "celery_worker"):
        service = compose["services"][name]
        assert "container_name" not in service, name
        assert "ports" not in service, name
        # They start once the broker takes connections and the API takes their reports.
        assert service["depends_on"].items() >= {
            "rmq": {"condition": "service_healthy"},
            "api": {"condition": "service_healthy"},
        }.items()


def test_exactly_one_beat_runs(compose: dict[str, Any]) -> None:
    # Scaled, every Beat would send every periodic task: the file must not invite it.
    beat = compose["services"]["celery_beat"]
    assert "deploy" not in beat and "scale" not in beat


def test_task_counter_lives_on_a_named_volume(compose: dict[str, Any]) -> None:
    api = compose["services"]["api"]
    counter_path = PurePosixPath(environment_defaults(api["environment"])["TASK_COUNTER_PATH"])
    mounts = {
        target: source for source, _, target in (mount.partition(":") for mount in api["volumes"])
    }
    assert mounts[str(counter_path.parent)] in compose["volumes"]
    # The image's own default points to the same place, for `docker run` without compose, and
    # the image creates that directory for its non-root user.
    dockerfile = DOCKERFILE_PATH.read_text(encoding="utf-8")
    assert f"TASK_COUNTER_PATH={counter_path}" in dockerfile
    assert f"mkdir {counter_path.parent}" in dockerfile


def test_health_checks_hold_no_spaces_in_their_arguments(compose: dict[str, Any]) -> None:
    # Podman 4.3's Docker-compatible API splits each argument on whitespace (podman#26519).
    for name, service in compose["services"].items():
        if "healthcheck" in service:
            kind, *arguments = service["healthcheck"]["test"]
            assert kind == "CMD", name
            assert not any(re.search(r"\s", argument) for argument in arguments), name


# --- the api replicas behind the proxy ----------------------------------------------------------


def haproxy_lines(section: str) -> list[str]:
    """The lines of one section of proxy/haproxy.cfg (``backend api``), comments left out."""
    lines, inside = [], False
    for line in HAPROXY_CFG_PATH.read_text(encoding="utf-8").splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            inside = line.strip() == section
        elif inside and line.strip() and not line.strip().startswith("#"):
            lines.append(line.strip())
    return lines


def test_the_api_scales_behind_the_proxy(compose: dict[str, Any]) -> None:
    api, proxy = compose["services"]["api"], compose["services"]["proxy"]
    # Replicas would collide on a host port: the proxy publishes the one the API had.
    assert "ports" not in api and "container_name" not in api
    assert proxy["ports"][0] == "${API_HOST_PORT:-8080}:8080"
    assert bind_mounts(proxy)["/usr/local/etc/haproxy/haproxy.cfg"] == "./proxy/haproxy.cfg"
    assert all(mount["read_only"] for mount in proxy["volumes"])
    # Every replica shares the tasks, so any may take a request or a report.
    settings = Settings.from_env(environment_defaults(api["environment"]))
    assert urlsplit(settings.task_store).scheme == "redis"
    assert api["depends_on"]["redis"] == {"condition": "service_healthy"}
    # The proxy sends to the service name on the API's port, and reads its /healthz.
    [template] = [line for line in haproxy_lines("backend api")
                  if line.startswith("server-template ")]
    assert f" api:{settings.api_port} " in template and "resolvers" in template
    assert "option httpchk GET /healthz" in haproxy_lines("backend api")
    # The API believes the proxy's X-Forwarded-For, and nobody else's.
    assert settings.trusted_proxy_parts == ((), ("proxy",))
    # The workers report to the replicas themselves.
    for name in PYTHON_SERVICES - {"api"}:
        environment = environment_defaults(compose["services"][name]["environment"])
        assert urlsplit(Settings.from_env(environment).callback_url).hostname == "api", name


def test_the_tasks_outlive_down_and_up_in_redis(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    [volume] = redis["volumes"]
    source, _, target = volume.partition(":")
    assert target == "/data" and source in compose["volumes"]


def test_each_demo_keeps_its_tasks_in_a_database_of_its_own(compose: dict[str, Any]) -> None:
    stores = {
        name: Settings.from_env(environment_defaults(compose["services"][name]["environment"],
                                                     ("", CLUSTER_VARIABLE_PREFIX)))
        for name in ("api", "api" + COPY_SUFFIX)
    }
    databases = {urlsplit(settings.task_store).path for settings in stores.values()}
    results = {urlsplit(settings.result_backend).path for settings in stores.values()}
    assert len(databases) == 2 and not databases & results


# --- profile "cluster": three nodes and the services' copies that use them -----------------------


def test_compose_itself_reads_the_cluster_profile() -> None:
    # The real Compose, which needs no engine for `config`: anchors, merges and profiles resolved.
    # A clean environment: the defaults of the file, not what the shell happens to export.
    def services(*profile: str) -> set[str]:
        result = subprocess.run(
            [str(VENV_BIN / "docker-compose"), *profile, "config", "--services"],
            cwd=ROOT, env={"PATH": str(VENV_BIN)}, capture_output=True, text=True, timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return set(result.stdout.split())

    single = services()
    assert single == PYTHON_SERVICES | IMAGE_SERVICES
    copies = {name + COPY_SUFFIX for name in PYTHON_SERVICES}
    assert services("--profile", CLUSTER_PROFILE) == single | set(CLUSTER_NODES) | copies


def test_cluster_nodes_share_a_cookie_and_discover_exactly_each_other(
    compose: dict[str, Any],
) -> None:
    assert services_of(compose, CLUSTER_PROFILE) - {
        name + COPY_SUFFIX for name in PYTHON_SERVICES
    } == set(CLUSTER_NODES)
    nodes = [compose["services"][name] for name in CLUSTER_NODES]
    # The node names the peers are known by: rabbit@<hostname>.
    assert [node["hostname"] for node in nodes] == list(CLUSTER_NODES)
    assert {node["image"] for node in nodes} == {compose["services"]["rmq"]["image"]}
    [cookie] = {node["environment"]["RABBITMQ_ERLANG_COOKIE"] for node in nodes}
    assert CONFIGURABLE_VALUE.fullmatch(cookie)["default"]

    conf = read_rabbitmq_conf(CLUSTER_CONF_PATH)
    assert conf["cluster_formation.peer_discovery_backend"] == "classic_config"
    peers = {value for key, value in conf.items()
             if key.startswith("cluster_formation.classic_config.nodes.")}
    assert peers == {f"rabbit@{name}" for name in CLUSTER_NODES}
    # Quorum queues declared before every node joined grow a replica on each node that joins.
    assert conf["quorum_queue.continuous_membership_reconciliation.enabled"] == "true"
    assert conf["quorum_queue.continuous_membership_reconciliation.target_group_size"] == str(
        len(CLUSTER_NODES))
    for node in nodes:
        mounts = bind_mounts(node)
        assert mounts["/etc/rabbitmq/rabbitmq.conf"] == "./rmq/cluster.conf"
        definitions = CONFIGURABLE_VALUE.fullmatch(mounts[conf["load_definitions"]])
        assert (ROOT / definitions["default"]).resolve() == rmq_definitions.PATHS[topology.QUORUM]
    # The nodes start together and agree on the one that forms the cluster: a node that waited
    # for another's health check would wait for a node that waits in peer discovery for it.
    assert all("depends_on" not in node for node in nodes)


def test_cluster_copies_run_the_originals_against_every_node(compose: dict[str, Any]) -> None:
    [user] = json.loads(
        rmq_definitions.PATHS[topology.QUORUM].read_text(encoding="utf-8"))["users"]
    renamed = {"rmq": CLUSTER_NODES, "api": ("api" + COPY_SUFFIX,)}
    for name in PYTHON_SERVICES:
        original, copy = compose["services"][name], compose["services"][name + COPY_SUFFIX]
        for key in ("build", "image", "command", "healthcheck", "stop_grace_period"):
            assert copy.get(key) == original.get(key), (name, key)
        # The same dependencies, with the cluster's nodes and API in place of the single ones.
        assert copy["depends_on"] == {
            new: condition
            for old, condition in original["depends_on"].items()
            for new in renamed.get(old, (old,))
        }, name

        environment = environment_defaults(copy["environment"], ("", CLUSTER_VARIABLE_PREFIX))
        assert set(environment) <= set(Settings.env_names()), name
        settings = Settings.from_env(environment)
        assert [urlsplit(url).netloc.split("@")[1] for url in settings.rmq_urls] == [
            f"{node}:5672" for node in CLUSTER_NODES
        ], name
        assert settings.rmq_queue_type == topology.QUORUM, name
        assert settings.rmq_user == user["name"], name
        assert rmq_definitions.check_password(settings.rmq_password, user["password_hash"]), name
        assert urlsplit(settings.callback_url).hostname == "api" + COPY_SUFFIX, name
        if name == "api":
            assert [urlsplit(url).hostname for url in settings.rmq_management_urls] == list(
                CLUSTER_NODES)
