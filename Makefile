# The demo's commands. Each target installs what it needs first, so a fresh Debian machine works.
SHELL := /bin/bash
VENV := .venv
PYTHON := $(VENV)/bin/python
# The interpreter .venv is made from (3.11 or newer): `make dev PYTHON3=python3.12`.
PYTHON3 ?= python3
PIP_INSTALL := $(PYTHON) -m pip install --quiet --disable-pip-version-check
# apt-get runs as root: through sudo unless make already runs as root, as in rmq/start-native.sh.
AS_ROOT := $(if $(filter 0,$(shell id -u)),,sudo)
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

# How many processes of each service `make dev` starts (the native `--scale`).
CONSUMERS ?= 1
WORKERS ?= 1
APIS ?= 1
# Several API processes share their tasks in the local Redis (common.settings.LOCAL_REDIS_STORE);
# one API process keeps them in its memory, as in the course, unless TASK_STORE says otherwise.
ifneq ($(APIS),1)
export TASK_STORE ?= redis://localhost:6379/2
endif
# SECURE=1 make dev: the production checklist on (docs/production.md: "Продакшен-чеклист"): the TLS-only broker
# node of rmq/secure-node.sh, and the credentials, tokens and settings `python -m secure` writes
# into .secure/.
SECURE ?=
ifeq ($(SECURE),1)
DEV_BROKER := secure-rmq
DEV_ENV := .secure/secure.env
MANAGEMENT_UI := https://localhost:15671
else
DEV_BROKER := rmq
MANAGEMENT_UI := http://localhost:15672
endif
# Extra pytest arguments, e.g. `make test PYTEST_ARGS="-k celery -x"`.
PYTEST_ARGS ?=
# make chaos: minutes of load, the faults' seed (new each run unless given), CLUSTER=1 for the
# three-node cluster.
MINUTES ?= 5
SEED ?=
CLUSTER ?=

.PHONY: help dev test compose-test fresh-box lint bench chaos venv rmq secure secure-rmq redis browser wrk iptables podman \
	definitions cluster cluster-stop clean

help:
	@echo "make dev    - RabbitMQ, Redis and the Procfile's services natively (CONSUMERS=N WORKERS=N"
	@echo "              APIS=N: N API processes on :8080 sharing their tasks in Redis);"
	@echo "              a service that dies is restarted; ./ctl status|stop|start|signal KILL <name>"
	@echo "              SECURE=1: TLS, generated credentials, API token, rate limit, JSON logs"
	@echo "make secure - write .secure/ (credentials, certificates) if missing; ROTATE=1: new secrets"
	@echo "make test   - lint, then the whole test suite against a real RabbitMQ"
	@echo "make bench  - both async paths under load, each figure beside its baseline (about 6 min)"
	@echo "make chaos  - MINUTES of load while seeded faults hit the demo, then every accepted task"
	@echo "              accounted for (SEED=N repeats a run, CLUSTER=1 on the three-node cluster)"
	@echo "make compose-test - docker-compose.yml booted on Podman and tested through its ports"
	@echo "              (for machines without Docker; about 10 min the first time)"
	@echo "make fresh-box - the quick start on a bare Debian 12 container, timed (SECURE=1 too)"
	@echo "make definitions - regenerate rmq/definitions*.json from common/topology.py"
	@echo "make cluster - three clustered RabbitMQ nodes beside the main one (AMQP :5681-5683);"
	@echo "              ./rmq/cluster.sh status shows the members; make cluster-stop removes them"

# .venv/bin/pip exists only once runner/venv.sh made the environment completely.
$(VENV)/bin/pip:
	./runner/venv.sh $(PYTHON3) $(VENV)

# Two sets of packages, each installed once and again when its requirements file changes: what
# the demo runs (make dev), and with it the tools of test, lint and bench. A stamp is written
# only after its install succeeded.
$(VENV)/.installed-runtime: requirements.txt | $(VENV)/bin/pip
	$(PIP_INSTALL) -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(VENV)/bin/pip
	$(PIP_INSTALL) -r requirements-dev.txt
	touch $@

# Everything: the demo and the tools of test, lint and bench.
venv: $(VENV)/.installed-dev

rmq:
	./rmq/start-native.sh

# The secure mode's files: kept once written, new credentials with ROTATE=1. The certificates
# are made by Debian's openssl.
secure: $(VENV)/.installed-runtime
	$(call apt_install,openssl)
	$(PYTHON) -m secure $(if $(filter 1,$(ROTATE)),--rotate)

# The TLS-only node for SECURE=1 (AMQPS :5671, HTTPS :15671), beside the course's node.
secure-rmq: secure
	./rmq/secure-node.sh start .secure

# Three nodes rabbit-1..3 in one cluster, beside the main node (docs/cluster.md: "Кластер на одной машине").
cluster:
	./rmq/cluster.sh start

cluster-stop:
	./rmq/cluster.sh stop

# Celery's result backend.
redis:
	./redis/start-native.sh

# $(call apt_install,COMMAND): Debian's package of that name, unless the command is there already.
define apt_install
@command -v $(1) >/dev/null || { $(AS_ROOT) apt-get update -qq && \
	$(AS_ROOT) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1) >/dev/null; }
endef

# Debian's chromium for the browser tests; Playwright never downloads a browser of its own.
browser:
	$(call apt_install,chromium)

# Debian's wrk, the HTTP load generator of `make bench`.
wrk:
	$(call apt_install,wrk)

# Debian's iptables: make chaos blackholes the API's port with it.
iptables:
	$(call apt_install,iptables)

# Podman and what it needs to run docker-compose.yml where no Docker engine is (containers/):
# runc (crun refuses this machine's cgroup layout), netavark and iptables for networks,
# aardvark-dns for service names, catatonit for `init: true`, debootstrap for the stand-ins.
CONTAINER_PACKAGES := podman runc netavark iptables aardvark-dns catatonit debootstrap

podman:
	@dpkg -s $(CONTAINER_PACKAGES) >/dev/null 2>&1 || { $(AS_ROOT) apt-get update -qq && \
		$(AS_ROOT) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		$(CONTAINER_PACKAGES) >/dev/null; }

# Supervisor runs the Procfile's services and restarts one that dies; `./ctl` controls them.
# Variables from .env (if there is one) reach every service, as with docker compose.
dev: $(VENV)/.installed-runtime $(DEV_BROKER) redis
	@echo "Демо: http://localhost:8080   панель RabbitMQ: $(MANAGEMENT_UI)   Flower: http://localhost:5555"
	$(if $(DEV_ENV),@echo "Защищённый режим: токен API и пароль брокера — в $(DEV_ENV)")
	@echo "Остановить: Ctrl-C"
	@echo "Сервисы: ./ctl status   убить consumer: ./ctl signal KILL consumer:consumer-0"
	set -a; if [ -f .env ]; then . ./.env; fi; $(if $(DEV_ENV),. ./$(DEV_ENV);) set +a; \
	exec $(PYTHON) -m runner.supervisor --scale consumer=$(CONSUMERS) --scale celery_worker=$(WORKERS) \
		--scale api=$(APIS)

# Ruff's checks, then the import rules between the parts (.importlinter).
lint: venv
	ruff check .
	lint-imports --no-logo

test: venv rmq redis browser wrk iptables lint
	$(PYTHON) -m pytest $(PYTEST_ARGS)

# The compose file as a Docker user runs it, on Podman with stand-ins for the official images.
compose-test: venv podman
	$(PYTHON) -m pytest -m compose tests/compose $(PYTEST_ARGS)

bench: venv rmq redis wrk
	$(PYTHON) -m bench

# Faults under load, then every accepted task accounted for (docs/failures.md: "Хаос под нагрузкой"). The
# run starts a redis-server of its own: `redis` is here to install it.
chaos: venv rmq redis iptables
	$(PYTHON) -m chaos --minutes $(MINUTES) $(if $(SEED),--seed $(SEED)) \
		$(if $(filter 1,$(CLUSTER)),--cluster)

# The quick start on a bare Debian 12 in a container, timed (docs/setup.md: "Первый запуск"):
# minutes and the network to Debian's mirror and PyPI, so not part of make test. SECURE=1 too.
fresh-box: venv podman
	$(PYTHON) -m containers fresh-box $(if $(filter 1,$(SECURE)),--secure)

# rmq/definitions.json (classic queues) and definitions.quorum.json (a cluster's) are generated
# from common/topology.py; a test fails when either is stale.
definitions: $(VENV)/.installed-runtime
	$(PYTHON) -m rmq.definitions
	$(PYTHON) -m rmq.definitions --queue-type quorum

clean:
	rm -rf $(VENV) .state .pytest_cache .hypothesis
