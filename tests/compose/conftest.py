"""The compose test's fixtures: Podman's API, the stand-in images, the project built once.

`make compose-test` runs these (``-m compose``); `make test` leaves them out. Figures worth
keeping (build and boot times, image sizes) go to ``.state/compose-figures.json``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Mapping

import pytest

from containers import engine, stand_ins
from runner.polling import wait_for
from runner.procfile import ROOT
from tests.compose.stack import Stack

log = logging.getLogger(__name__)

FIGURES = ROOT / ".state" / "compose-figures.json"
PROJECT = "rmq-demo-test"


@pytest.fixture(scope="session")
def figures() -> Iterator[dict]:
    measured: dict = {}
    yield measured
    FIGURES.parent.mkdir(exist_ok=True)
    FIGURES.write_text(json.dumps(measured, indent=2, ensure_ascii=False) + "\n")
    log.info("figures: %s", measured)


@pytest.fixture(scope="session")
def podman_api(tmp_path_factory) -> Iterator[engine.ApiService]:
    # A socket of the test's own: `python -m containers serve` may hold the default one.
    with engine.running_engine(tmp_path_factory.mktemp("podman") / "podman.sock") as service:
        yield service


@pytest.fixture(scope="session")
def stack(podman_api: engine.ApiService, tmp_path_factory, figures: dict) -> Iterator[Stack]:
    """The project with its images built (stand-ins first where no registry is reachable)."""
    built = Stack(podman_api, PROJECT, tmp_path_factory.mktemp("compose-logs"))
    started = time.monotonic()
    config = stand_ins.compose_config(engine.COMPOSE, built.env)
    images = stand_ins.official_images(config)
    figures["stand_ins_built"] = stand_ins.build_missing(images)
    figures["stand_ins_seconds"] = round(time.monotonic() - started, 1)
    # Whatever an interrupted run left behind.
    built.compose("--profile", "*", "down", "--volumes", "--remove-orphans")
    started = time.monotonic()
    built.compose("build")
    figures["app_build_seconds"] = round(time.monotonic() - started, 1)
    figures["image_mib"] = {
        image: round(int(engine.podman("image", "inspect", "--format", "{{.Size}}",
                                       stand_ins.qualified(image)).stdout) / 2**20)
        for image in [*images, *{s["image"] for s in config["services"].values() if "build" in s}]
    }
    yield built
    built.save_logs()
    built.compose("--profile", "*", "down", "--volumes", "--remove-orphans", "--timeout", "5")


def boot(stack: Stack, *services: str, profile: str | None = None,
         healthy: tuple[str, ...] = (), scale: Mapping[str, int] | None = None) -> float:
    """``docker compose [--profile P] up --detach [--scale S=N] [services]``: seconds until
    every container runs and the ``healthy`` services' checks pass (each of their replicas')."""
    started = time.monotonic()
    profile_args = ["--profile", profile] if profile else []
    scale = scale or {}
    scale_args = [arg for name, count in scale.items() for arg in ("--scale", f"{name}={count}")]
    stack.compose(*profile_args, "up", "--detach", *scale_args, *services)
    for service in healthy:
        stack.wait_running(service, scale.get(service, 1), timeout=300)
    wait_for(lambda: all(c["State"] == "running" for c in stack.containers()), 120,
             interval=1.0, what="every container running")
    return round(time.monotonic() - started, 1)
