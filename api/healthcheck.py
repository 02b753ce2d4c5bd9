"""``python -m api.healthcheck``: exit 0 when this container's API answers ``/healthz``, 1 if not.

The compose file's health check for the api service. A module rather than ``python -c "..."``:
Podman 4.3's Docker-compatible API splits a health check's arguments on whitespace, so a check
whose arguments hold no spaces runs the same under Docker and Podman.
"""

import sys
import urllib.request

from common import routes
from common.settings import Settings

TIMEOUT = 3.0


def main() -> int:
    settings = Settings.from_env_or_exit()
    url = f"http://127.0.0.1:{settings.api_port}{routes.HEALTHZ}"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            return 0 if response.status == 200 else 1
    except OSError as exc:  # refused, timed out, or an HTTP error status
        # The health check's output is what `docker inspect` shows as the reason.
        sys.stderr.write(f"{url}: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
