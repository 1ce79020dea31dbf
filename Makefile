# The two commands a new user needs: `make run` and `make test`. Everything else is for
# maintainers. The virtual environment is built on Python 3.13 (the Lambda runtime) from the
# lock file requirements/dev.txt, the first time any target needs it.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# sam build needs a `python3.13` on PATH: the venv provides one.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export AWS_DEFAULT_REGION ?= eu-west-1
export SAM_CLI_TELEMETRY := 0
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# Python writes the bytecode of what it imports (into .venv and the gitignored __pycache__/),
# even where the shell sets PYTHONDONTWRITEBYTECODE: without it every process compiled boto3,
# moto and the tests from source again (unit collection 18 s -> 8 s of CPU), and `make test`
# starts dozens (each suite, the local stack, every `postback` the e2e suite runs).
unexport PYTHONDONTWRITEBYTECODE

# Every AWS call the functions, the state machine and the CLI make in the integration,
# reliability and e2e suites is recorded here; `make iam` checks it against the roles.
CALL_LOG := $(CURDIR)/build/awsrules/calls.jsonl
TOOLS := .venv-tools
CHECKOV := $(TOOLS)/checkov/bin/checkov
# pytest-xdist workers for the unit and integration suites (0: one process). Measured on this
# 2-core machine at load 10-16 (unit/domain + unit/cli, same run, twice each): one process
# 69-75 s wall, 19-21 s CPU; two workers 120-121 s wall, 36 s CPU (each worker collects the
# suite again). So one process by default; WORKERS=2 where the cores are idle (`make check`
# does: see CHECK_WORKERS).
# `make test` runs its stages two at a time (JOBS), one process each (TEST_WORKERS): the
# suites time deadlines and waits, and a starved process misses them. The tests whose own
# work is bounded by the wall clock are marked `quiet` and run alone after the stages that run
# side by side (SKIP_QUIET leaves them out of those). A bigger machine raises all three. The
# reliability suite runs without coverage (tracing costs 60-80% more CPU, and its waits are
# timed); the coverage figure is the other suites'.
WORKERS ?= 0
JOBS ?= 2
TEST_WORKERS ?= 0
# Each suite alone covers less than the ratchet (e2e alone: 42.5%), so pytest-cov is told not to
# judge a suite (--cov-fail-under=0); `make coverage` judges the combined figure once.
# `make test` measures branch coverage over layers/, functions/ and ops/ in every suite, each
# suite into its own data file here (suites run side by side), and prints it at the end.
COVERAGE_DIR := $(CURDIR)/build/coverage

.PHONY: help venv run demo test lint complex types template aws-rules cfn-lint checkov calls-reset iam iam-static build-size check coverage coverage-reset unit integration reliability quiet e2e chromium browser build deploy bench lock clean

help:
	@echo "make run     start the whole system locally (no AWS account needed)"
	@echo "make test    lint, type-check, the template against AWS rules, every test, IAM check"
	@echo "make check   the inner loop: lint, type-check, the unit suite"
	@echo "make demo    a scripted tour on the local stack"
	@echo "make build   sam build       make deploy   sam deploy (ENV=prod for production)"
	@echo "make bench   the benchmark suite, figures in bench/results.json"

venv: $(STAMP)

# The lock is installed by uv, at the version the lock itself pins (a fresh clone is ready in
# well under a minute); pip does the same, slower, when uv cannot be had (POSTBACK_NO_UV=1 forces it).
UV_PIN = $$(grep -E '^uv==' requirements/dev.txt)
$(STAMP): requirements/dev.txt pyproject.toml
	@test -x $(PY) || "$$(scripts/find-python313)" -m venv $(VENV)
	@echo "installing the dev environment from requirements/dev.txt into $(VENV)..."
	@if [ -z "$$POSTBACK_NO_UV" ] && $(PY) -m pip install --quiet "$(UV_PIN)" \
		&& $(VENV)/bin/uv pip install --quiet --python $(PY) -r requirements/dev.txt \
		&& $(VENV)/bin/uv pip install --quiet --python $(PY) --no-deps --no-build-isolation -e .; then :; \
	else \
		echo "installing with pip instead of uv (slower)"; \
		$(PY) -m pip install --quiet -r requirements/dev.txt \
		&& $(PY) -m pip install --quiet --no-deps --no-build-isolation -e .; \
	fi
	@touch $@

run: $(STAMP)
	$(PY) -m postback_ops.local

demo: $(STAMP)
	$(PY) -m postback_ops.local.demo

# Four phases: reset the call log and the coverage data; every independent stage, JOBS at a
# time (the longest first, so that a short one ends the phase; chromium's check first, or the
# browser suite waits for it and starts last; a stage's output is printed whole when it
# ends), the `quiet` tests left out; the `quiet` tests, alone; then what reads the suites'
# records: the IAM check of the recorded calls, and the coverage report.
TEST_COV := COV="--cov --cov-report= --cov-fail-under=0"
test: $(STAMP)
	@$(MAKE) --no-print-directory calls-reset coverage-reset
	@$(MAKE) --no-print-directory -j$(JOBS) --output-sync=target \
		chromium reliability e2e browser integration unit types build-size checkov template cfn-lint iam-static lint \
		$(TEST_COV) WORKERS=$(TEST_WORKERS) SKIP_QUIET=1
	@$(MAKE) --no-print-directory quiet $(TEST_COV)
	@$(MAKE) --no-print-directory iam coverage

# The inner loop: lint, types and the unit suite, side by side, the unit suite on CHECK_WORKERS
# pytest-xdist workers. Fresh clone, same hour, load 1.6-2.4: one process 88.5 s and 76.5 s
# wall (93 s CPU); two workers 67 s and 65 s wall (108 s CPU). Where the cores are busy with
# other work, CHECK_WORKERS=0 (each worker collects the suite again).
CHECK_WORKERS ?= 2
check: $(STAMP)
	@$(MAKE) --no-print-directory -j2 --output-sync=target lint types unit WORKERS=$(CHECK_WORKERS)

lint: complex
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The complexity gate on the shipped code (pyproject's ruff section selects the same rules, so
# `ruff check .` holds it too): mccabe at 10, returns 6, branches 12, statements 50.
complex: $(STAMP)
	$(VENV)/bin/ruff check --select C901,PLR0911,PLR0912,PLR0915 layers functions ops

types: $(STAMP)
	$(VENV)/bin/mypy

template: $(STAMP)
	$(VENV)/bin/sam validate --lint

# The template as AWS will run it: cfn-lint on its CloudFormation translation, checkov on it.
aws-rules: cfn-lint checkov

cfn-lint: $(STAMP)
	$(PY) -m postback_ops.awsrules.lint

# checkov has its own pinned environment: its dependencies clash with the dev lock.
checkov: $(CHECKOV)
	$(CHECKOV) --file template.yaml --framework cloudformation --quiet --compact --skip-download
	$(VENV)/bin/pytest -q tests/awsrules

$(CHECKOV): requirements/checkov.txt $(STAMP)
	@test -x $(TOOLS)/checkov/bin/python || "$$(scripts/find-python313)" -m venv $(TOOLS)/checkov
	@if [ -z "$$POSTBACK_NO_UV" ] && $(VENV)/bin/uv pip install --quiet --python $(TOOLS)/checkov/bin/python \
		-r requirements/checkov.txt; then :; \
	else \
		echo "installing checkov with pip instead of uv (slower)"; \
		$(TOOLS)/checkov/bin/python -m pip install --quiet -r requirements/checkov.txt; \
	fi
	@touch $@

calls-reset:
	@rm -f $(CALL_LOG)

# IAM sufficiency: every recorded call against its principal's translated role.
iam: $(STAMP)
	$(PY) -m postback_ops.awsrules.iam $(CALL_LOG)

# IAM without test coverage: every AWS call site in each function's code (AST, through wiring)
# against its translated role; catches a grant missing on a path no test takes.
iam-static: $(STAMP)
	$(PY) -m postback_ops.awsrules.static_calls

# The suites. The reliability suite's waits are timed and the e2e suite shares one local stack,
# so those two run in one process each.
unit: $(STAMP)
	COVERAGE_FILE=$(COVERAGE_DIR)/.coverage.unit $(VENV)/bin/pytest -q -n $(WORKERS) $(COV) tests/unit

NOT_QUIET = $(if $(SKIP_QUIET),-m "not quiet")
integration: $(STAMP)
	POSTBACK_AWS_CALL_LOG=$(CALL_LOG) COVERAGE_FILE=$(COVERAGE_DIR)/.coverage.integration \
		$(VENV)/bin/pytest -q -n $(WORKERS) $(COV) $(NOT_QUIET) tests/integration

reliability: $(STAMP)
	POSTBACK_AWS_CALL_LOG=$(CALL_LOG) $(VENV)/bin/pytest -q $(NOT_QUIET) tests/reliability

# The tests marked `quiet` (pyproject): each bounds its own work by the wall clock (ten slow
# sends at once within 1.5 s, a hanging endpoint cut within 2.5 s, a batch inside its played
# Lambda timeout). `make test` runs them here, after the stages that run side by side, with
# nothing else of its own running. A suite with none marked is fine (pytest's exit 5).
quiet: $(STAMP)
	POSTBACK_AWS_CALL_LOG=$(CALL_LOG) COVERAGE_FILE=$(COVERAGE_DIR)/.coverage.quiet \
		$(VENV)/bin/pytest -q $(COV) -m quiet tests/integration || [ $$? -eq 5 ]
	POSTBACK_AWS_CALL_LOG=$(CALL_LOG) $(VENV)/bin/pytest -q -m quiet tests/reliability || [ $$? -eq 5 ]

e2e: $(STAMP)
	POSTBACK_AWS_CALL_LOG=$(CALL_LOG) COVERAGE_FILE=$(COVERAGE_DIR)/.coverage.e2e \
		$(VENV)/bin/pytest -q $(COV) -m e2e tests/e2e

coverage-reset:
	@rm -rf $(COVERAGE_DIR)
	@mkdir -p $(COVERAGE_DIR)

# The suites' coverage as one figure; it fails under pyproject's fail_under (the ratchet).
coverage: $(STAMP)
	@$(VENV)/bin/coverage combine --quiet $(COVERAGE_DIR)
	$(VENV)/bin/coverage report

# The portal's browser tests drive Debian's Chromium (Playwright cannot download browsers here):
# installed with apt-get where it is missing, and said so. CHROMIUM moves it.
CHROMIUM ?= /usr/bin/chromium
chromium:
	@if [ ! -x "$(CHROMIUM)" ]; then \
		echo "$(CHROMIUM) is missing: installing Debian's chromium with apt-get (the portal's browser tests need it)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	fi

browser: $(STAMP) chromium
	POSTBACK_AWS_CALL_LOG=$(CALL_LOG) POSTBACK_CHROMIUM=$(CHROMIUM) COVERAGE_FILE=$(COVERAGE_DIR)/.coverage.browser \
		$(VENV)/bin/pytest -q $(COV) -m browser tests/browser

build: $(STAMP)
	$(VENV)/bin/sam build

# sam build succeeds and every function with its layers stays under 30 MB.
build-size: build
	$(PY) scripts/check_build_size.py

deploy: build
	$(VENV)/bin/sam deploy --config-env $${ENV:-default}

bench: $(STAMP)
	$(PY) -m bench

lock:
	$(PY) -m piptools compile --quiet --no-emit-index-url --no-emit-find-links --strip-extras \
		--allow-unsafe -o requirements/dev.txt requirements/dev.in

clean:
	rm -rf .aws-sam $(VENV) $(TOOLS) build/awsrules build/coverage .mypy_cache .ruff_cache .hypothesis
