#!/bin/bash
# Run inside a container of a bare Debian 12 by `python -m containers fresh-box`: the README's
# line of prerequisites, then the quick start, each step timed, until a first task is DONE.
# $DEV is the command (make dev, or make dev SECURE=1); the repository is mounted at /src.
set -euo pipefail

seconds_since() { echo $(( $(date +%s) - $1 )); }
python_get() { python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" "$1"; }

started=$(date +%s)
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq make python3-venv >/dev/null
echo "fresh-box: prerequisites (apt install make python3-venv): $(seconds_since "$started") s"

cp -a /src /demo
cd /demo
dev_started=$(date +%s)
$DEV >/tmp/dev.log 2>&1 &
until python_get http://localhost:8080/healthz 2>/dev/null; do
    if [ "$(seconds_since "$dev_started")" -gt 900 ]; then
        echo "fresh-box: no page after 900 s; the end of make dev's output:"
        tail -40 /tmp/dev.log
        exit 1
    fi
    sleep 1
done
echo "fresh-box: $DEV until the page answers: $(seconds_since "$dev_started") s"

# One Celery task of 3 s, with the API token when the secure mode made one.
python3 - <<'PY'
import json, pathlib, time, urllib.request

headers = {"Content-Type": "application/json"}
env = pathlib.Path(".secure/secure.env")
if env.exists():
    values = dict(line.split("=", 1) for line in env.read_text().splitlines()
                  if line and not line.startswith("#"))
    headers["Authorization"] = f"Bearer {values['API_TOKEN']}"
body = json.dumps({"method": "celery", "timeout": 3}).encode()
request = urllib.request.Request("http://localhost:8080/api/tasks", data=body, headers=headers)
number = json.load(urllib.request.urlopen(request))["tasks"][0]["task_num"]
sent = time.monotonic()
while time.monotonic() - sent < 120:
    task = json.load(urllib.request.urlopen(f"http://localhost:8080/api/tasks/{number}"))
    if task["status"] in ("DONE", "ERROR"):
        print(f"fresh-box: the first task {task['status']} {time.monotonic() - sent:.1f} s"
              " after it was sent")
        raise SystemExit(task["status"] != "DONE")
    time.sleep(0.5)
raise SystemExit("fresh-box: the first task did not finish in 120 s")
PY
echo "fresh-box: from a bare box to the first DONE: $(seconds_since "$started") s"
