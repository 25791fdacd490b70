# Kanal: `make demo` runs the vehicle-telemetry pipeline, `make test` checks everything.
VENV      ?= .venv
PYTHON    := $(VENV)/bin/python
KANAL_CACHE ?= $(HOME)/.cache/kanal
export PIP_CACHE_DIR ?= $(KANAL_CACHE)/pip
PYTEST_ARGS ?=

.PHONY: help demo bench venv lock image lint test test-argocd test-unit test-integration test-e2e chaos stack-up stack-down clean

help:
	@echo "make demo   - start the local real stack and run the telemetry pipeline"
	@echo "              (DEMO_ARGS=--mqtt: the vehicles publish over MQTT)"
	@echo "make test   - lint, types, import contracts and every test (starts what they need)"
	@echo "make image  - build the kanal:<version> image (Docker or podman) and its archive"
	@echo "make lock   - regenerate requirements.lock from pyproject.toml"

# The runtime dependencies at the versions of requirements.lock, as in the image (pip
# cannot check hashes of an editable install, so only the pins are kept).
$(VENV)/.installed: pyproject.toml requirements.lock
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	grep -o '^[A-Za-z0-9][^\\]*' requirements.lock >$(VENV)/constraints.txt
	$(VENV)/bin/pip install -q -c $(VENV)/constraints.txt -e '.[all,dev]'
	touch $@

venv: $(VENV)/.installed

# The pinned dependencies (with hashes, for every platform) the image installs: every
# extra, and the build backend of pyproject.toml's [build-system].
lock: venv
	$(PYTHON) -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")' \
	  | $(VENV)/bin/uv pip compile --quiet pyproject.toml - --extra all --universal \
	    --python-version 3.11 --generate-hashes --custom-compile-command 'make lock' \
	    -o requirements.lock

# kanal:<version> with Docker, else podman (installed if neither is); `dev/image.sh
# archive` prints the docker-archive for kind and containerd.
image:
	dev/image.sh build

demo: venv
	$(PYTHON) -m dev.demo $(DEMO_ARGS)

bench: venv  ## Kanal against Apache Connect and the raw limits (bench/README.md)
	$(PYTHON) -m bench.run $(BENCH_ARGS)

lint: venv
	$(VENV)/bin/ruff check worker operator tests bench dev
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

tools:
	dev/tools.sh

sync-chart: venv
	$(PYTHON) dev/sync_chart.py

test: lint tools
	$(VENV)/bin/pytest -q $(PYTEST_ARGS) tests

# Only the live Argo CD sync of tests/e2e/test_argocd.py (make test runs it too).
test-argocd: venv
	$(VENV)/bin/pytest -q -m argocd_live tests/e2e

test-unit: venv
	$(VENV)/bin/pytest -q tests/unit

test-integration: venv
	$(VENV)/bin/pytest -q tests/integration

test-e2e: venv
	$(VENV)/bin/pytest -q tests/e2e

# Only the fault-injection runs of tests/reliability (make test runs them too);
# KANAL_CHAOS_RECORDS=N sizes them (default 500000, see docs/reliability.md).
chaos: venv
	$(VENV)/bin/pytest -q -s -m chaos $(PYTEST_ARGS) tests/reliability

stack-up:
	dev/stack up

stack-down:
	dev/stack down

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
