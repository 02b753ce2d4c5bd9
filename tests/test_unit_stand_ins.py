"""The stand-ins' naming rules: which image a tag names and which folder builds it (pure logic)."""

import pytest

from containers import stand_ins
from runner.procfile import ROOT


@pytest.mark.parametrize(("image", "stored_as"), [
    ("redis:7.4.2-alpine", "docker.io/library/redis:7.4.2-alpine"),
    ("bitnami/redis:7", "docker.io/bitnami/redis:7"),
    ("localhost/rmq-demo-base:trixie", "localhost/rmq-demo-base:trixie"),
    ("quay.io/prometheus/prometheus:v3", "quay.io/prometheus/prometheus:v3"),
])
def test_a_short_name_is_qualified_as_docker_hub_stores_it(image: str, stored_as: str) -> None:
    assert stand_ins.qualified(image) == stored_as


def test_the_version_is_the_tag_before_its_variant() -> None:
    assert stand_ins.version_of("rabbitmq:4.0.5-management") == "4.0.5"
    assert stand_ins.version_of("python:3.11.13-slim-bookworm") == "3.11.13"
    assert stand_ins.version_of("prom/prometheus:v2.53.3") == "2.53.3"


def test_the_official_images_are_those_pulled_and_those_built_from() -> None:
    config = {"services": {
        "app": {"build": {"context": str(ROOT)}, "image": "rmq-demo-app:dev"},
        "rmq": {"image": "rabbitmq:4.0.5-management"},
        "redis": {"image": "redis:7.4.2-alpine"},
    }}
    images = stand_ins.official_images(config)
    assert "rmq-demo-app:dev" not in images
    assert {"rabbitmq:4.0.5-management", "redis:7.4.2-alpine"} < set(images)
    # The Dockerfile's base: built FROM, so pulled as well.
    assert any(image.startswith("python:") for image in images)
    for image in images:
        assert (stand_ins.stand_in_dir(image) / "Containerfile").is_file()


def test_an_image_no_stand_in_builds_is_named_in_the_error() -> None:
    with pytest.raises(LookupError, match="nginx:1.27"):
        stand_ins.stand_in_dir("nginx:1.27")
