"""Stand-ins for the official images the compose file names, built here from Debian packages.

Only for a machine that reaches no image registry (this project's test machines): Docker users
pull the real images and never run this. Each stand-in is tagged with exactly the name the
compose file or the Dockerfile uses, so neither changes for the test, and keeps the contract the
file relies on (docs/setup.md: "Docker"). A stand-in is built only when its tag is missing.

The base of each is a Debian root made with ``debootstrap`` and imported as an image: no image is
ever pulled.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from containers.engine import podman
from runner.procfile import ROOT

log = logging.getLogger(__name__)

STAND_INS = Path(__file__).with_name("stand-ins")
# The base every Containerfile here starts FROM, one per Debian release.
BASE_IMAGE = "localhost/rmq-demo-base"
FROM_BASE = re.compile(rf"^FROM {re.escape(BASE_IMAGE)}:(\S+)", re.MULTILINE)
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# Pip inside a build reaches the registry only through this machine's certificate authority.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# Every package debootstrap leaves behind would be in every image built from the base.
BASE_LEFTOVERS = ("var/cache/apt/archives", "var/lib/apt/lists")


def qualified(image: str) -> str:
    """The name an engine stores a Docker Hub image under (``redis:7`` -> ``docker.io/library/redis:7``)."""
    first = image.split("/", 1)[0]
    if "/" not in image:
        return f"docker.io/library/{image}"
    if "." not in first and ":" not in first and first != "localhost":
        return f"docker.io/{image}"
    return image


def official_images(compose_config: dict) -> list[str]:
    """The images a compose project pulls: every service's image but those it builds, plus the
    images its Dockerfiles start FROM. ``compose_config`` is ``docker compose config --format
    json``."""
    images: set[str] = set()
    for service in compose_config["services"].values():
        build = service.get("build")
        if build is None:
            images.add(service["image"])
            continue
        dockerfile = Path(build["context"]) / build.get("dockerfile", "Dockerfile")
        images.update(re.findall(r"^FROM\s+(\S+)", dockerfile.read_text(), re.MULTILINE))
    return sorted(images)


def stand_in_dir(image: str) -> Path:
    """The folder that builds ``image`` (``rabbitmq:4.0.5-management`` -> ``stand-ins/rabbitmq``)."""
    repository = qualified(image).rsplit(":", 1)[0].rsplit("/", 1)[-1]
    folder = STAND_INS / repository
    if not (folder / "Containerfile").is_file():
        raise LookupError(f"{image} is not stored here and no stand-in builds it ({folder})")
    return folder


def version_of(image: str) -> str:
    """The upstream version in a tag: ``4.0.5-management`` -> ``4.0.5``, ``v2.53.3`` -> ``2.53.3``."""
    tag = qualified(image).rsplit(":", 1)[1].split("-", 1)[0]
    # Prometheus tags its images v<version>; Debian's package versions have no "v".
    return tag[1:] if re.fullmatch(r"v\d.*", tag) else tag


def exists(image: str) -> bool:
    return podman("image", "exists", qualified(image), check=False).returncode == 0


def build_base(release: str) -> None:
    """A minimal Debian ``release`` as the image ``rmq-demo-base:<release>``."""
    with tempfile.TemporaryDirectory(prefix=f"rmq-demo-{release}-") as tmp:
        root = Path(tmp) / "root"
        log.info("debootstrap %s (about a minute and a half)", release)
        result = subprocess.run(
            ["debootstrap", "--variant=minbase", release, str(root), DEBIAN_MIRROR],
            capture_output=True, text=True, timeout=900,
        )
        if result.returncode != 0:
            # debootstrap says why (an unreachable mirror, an unknown release) in its last lines.
            raise RuntimeError(f"debootstrap {release} failed:\n"
                               + "\n".join((result.stdout + result.stderr).splitlines()[-10:]))
        # As in Docker's Debian images: package scripts never start services during a build.
        policy = root / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        for leftover in BASE_LEFTOVERS:
            for path in (root / leftover).glob("*"):
                if path.is_file():
                    path.unlink()
        tarball = Path(tmp) / "root.tar"
        subprocess.run(["tar", "-C", str(root), "-cf", str(tarball), "."], check=True, timeout=300)
        podman("import", str(tarball), f"{BASE_IMAGE}:{release}", timeout=300)


def build_stand_in(image: str) -> None:
    folder = stand_in_dir(image)
    with tempfile.TemporaryDirectory(prefix="rmq-demo-stand-in-") as tmp:
        context = Path(tmp) / folder.name
        shutil.copytree(folder, context)
        shutil.copy(HOST_CA_BUNDLE, context / "host-ca-certificates.crt")
        podman(
            "build", "--quiet", "--build-arg", f"VERSION={version_of(image)}",
            "--tag", qualified(image), str(context), timeout=900,
        )
    log.info("built the stand-in for %s", image)


def build_missing(images: list[str]) -> list[str]:
    """Build a stand-in for each of ``images`` the engine lacks; return those built."""
    missing = [image for image in images if not exists(image)]
    folders = {image: stand_in_dir(image) for image in missing}
    releases = {
        match for folder in folders.values()
        for match in FROM_BASE.findall((folder / "Containerfile").read_text())
    }
    bases = [release for release in releases if not exists(f"{BASE_IMAGE}:{release}")]
    # Two debootstraps, or two apt-gets, at once: each mostly waits on the network.
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(build_base, bases))
        list(pool.map(build_stand_in, missing))
    return missing


def compose_config(compose: list[str], env: dict[str, str]) -> dict:
    """``docker compose config`` with every profile, as JSON."""
    result = subprocess.run(
        [*compose, "--profile", "*", "config", "--format", "json"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=60,
    )
    return json.loads(result.stdout)
