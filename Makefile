# The two commands of the README's quick start: `make bench` and `make test`.
# Each creates the environments it needs when they are missing (idempotent: a stamp file per
# environment, rebuilt when pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.bnbench-installed
# The frameworks' environments and the test list come from the adapters' declarations
# (scripts/frameworks.mk, generated: `make generate`): FRAMEWORK_EXTRAS, OWN_ENVS, ENV_REQS_<env>,
# ENV_THEN_<env>, ENV_PYTHON_VERSION_<env>, TEST_FRAMEWORKS and the rules of script-made environments.
ENVS := .envs
.DEFAULT_GOAL := env
include scripts/frameworks.mk
# The main environment: every framework that installs beside numpy 2 (docs/FRAMEWORKS.md).
EXTRAS := test,$(FRAMEWORK_EXTRAS),report,progress,bench,tune,conventions
ENV_STAMPS := $(foreach env,$(OWN_ENVS),$(ENVS)/$(env)/.bnbench-installed)
# An environment's Python other than the main one (Lasagne: 3.9); pyenv's shims answer only for its
# selected versions, so its versions folder is looked in first.
env_python = $(or $(firstword $(wildcard $(HOME)/.pyenv/versions/$(1)*/bin/python$(1))),$(shell command -v python$(1) 2>/dev/null),python$(1))
PYTEST_ARGS ?=

# `make bench` (the quick default): `bnbench compare` of every framework's best mode at tiny and
# medium, float32, in interleaved paired rounds (BUDGET seconds of rounds per size, over SETS sets
# of freshly started workers), in the environments `make test` builds; then the tables.
# `make bench GRID=full` times everything through asv (every mode, dtype and size, every
# benchmark), whose environments asv builds itself.
GRID ?= quick
THREADS ?= 2
BUDGET ?= 90
SETS ?= 2
COMPARE_SIZES ?= tiny medium
ASV_ARGS ?=
ALL_BENCHMARKS := TrainStep|Digits|Tune|WorkerStep
QUICK_BENCHMARKS := TrainStep.time_train_step|TrainStepDerived.track_(fraction_of_peak|threads)|WorkerStep
BENCH ?= all
BENCH_REGEX ?= $(if $(filter quick,$(BENCH)),$(QUICK_BENCHMARKS),$(ALL_BENCHMARKS))

.PHONY: test test-quick bench scale env clean-env generate lecture tunelogs system-packages

# Regenerate every file derived from the frameworks' declarations (tests/test_catalogue.py fails
# while one is stale).
generate:
	@$(VENV)/bin/python -m bnbench.catalogue

env: system-packages $(STAMP) $(ENV_STAMPS)

# The Debian packages the frameworks' kept forms link to (the adapters' system_packages).
system-packages:
	@bash scripts/ensure-debian-packages.sh $(SYSTEM_PACKAGES)

env-%: $(ENVS)/%/.bnbench-installed
	@true

# The main environment: every framework that installs beside numpy 2.
$(STAMP): pyproject.toml Makefile scripts/frameworks.mk
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@echo "installing bnbench[$(EXTRAS)] into $(VENV) (log: $(VENV)/pip.log)"
	@$(VENV)/bin/python -m pip install --disable-pip-version-check -e ".[$(EXTRAS)]" > $(VENV)/pip.log 2>&1 \
		|| { grep -v "^WARNING: Location" $(VENV)/pip.log | tail -40; exit 1; }
	@touch $@

# One venv per framework whose dependencies conflict with the main environment's (MXNet and
# Theano need numpy<1.24, Chainer numpy<2, Lasagne Python 3.9), reached through worker processes.
$(ENVS)/%/.bnbench-installed: pyproject.toml Makefile scripts/frameworks.mk
	@test -x $(ENVS)/$*/bin/python || $(if $(ENV_PYTHON_VERSION_$*),$(call env_python,$(ENV_PYTHON_VERSION_$*)),$(PYTHON)) -m venv $(ENVS)/$* \
		|| { echo "cannot create $(ENVS)/$*: $(if $(ENV_PYTHON_VERSION_$*),$(call env_python,$(ENV_PYTHON_VERSION_$*)),$(PYTHON)) is needed"; exit 1; }
	@echo "installing $* and bnbench[test,progress] into $(ENVS)/$* (log: $(ENVS)/$*/pip.log)"
	@{ $(ENVS)/$*/bin/python -m pip install --disable-pip-version-check $(ENV_REQS_$*) \
	   && { test -z '$(ENV_THEN_$*)' || $(ENVS)/$*/bin/python -m pip install --disable-pip-version-check $(ENV_THEN_$*); } \
	   && $(ENVS)/$*/bin/python -m pip install --disable-pip-version-check -e ".[test,progress]" $(ENV_REQS_$*); } \
		> $(ENVS)/$*/pip.log 2>&1 || { grep -v "^WARNING: Location" $(ENVS)/$*/pip.log | tail -40; exit 1; }
	@touch $@

# The whole suite in the main environment (the frameworks of other environments, and the Keras
# backends other than this process's, through worker processes), TEST_WORKERS pytest processes
# side by side (pytest-xdist; the cases are independent), then the reference and the adapter
# in-process inside each environment whose declaration asks for it (ENV_TESTS), on that
# environment's own numpy.
TEST_WORKERS ?= 2
# --durations: the slowest tests named at the end of every run (the test loop is held to 12 minutes)
PYTEST_PARALLEL = $(if $(filter 1,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist load)
test: system-packages $(STAMP) $(ENV_STAMPS)
	@bash scripts/ensure-postgresql.sh
	BNBENCH_FRAMEWORKS=$(TEST_FRAMEWORKS) BNBENCH_REQUIRE_POSTGRES=1 $(VENV)/bin/python -m pytest $(PYTEST_PARALLEL) --durations=15 $(PYTEST_ARGS)
	@for name in $(ENV_TESTS); do \
		echo "BNBENCH_FRAMEWORKS=numpy,$$name $(ENVS)/$$name/bin/python -m pytest ... (in its own environment)"; \
		BNBENCH_FRAMEWORKS=numpy,$$name $(ENVS)/$$name/bin/python -m pytest -p no:cacheprovider $(PYTEST_ARGS) \
			tests/test_reference.py tests/test_spec.py tests/test_equivalence.py || exit 1; \
	done

# The fast subset, for development: every test but the slow ones (a whole command's run, many
# workers), the equivalence cases of the reference and the frameworks named in QUICK_FRAMEWORKS.
QUICK_FRAMEWORKS ?= numpy,jax
test-quick: $(STAMP)
	BNBENCH_FRAMEWORKS=$(QUICK_FRAMEWORKS) $(VENV)/bin/python -m pytest $(PYTEST_PARALLEL) -m "not slow" -q $(PYTEST_ARGS)

# Quick default: paired comparisons, one size at a time, then the tables; the rows whose interval
# was still wider than the target are printed at the end with the budget that would converge them.
# Full grid: asv run in the environments `make test` builds (the main one in asv's process, every
# other framework in its worker, through the same timing path as compare), then `bnbench verify`
# there, the measured conventions, the published tables and asv's HTML; the exit status is asv's,
# or verify's. Both name the machine by its hardware (bnbench.timing.machine).
MACHINE_ID = $$($(VENV)/bin/python -c 'from bnbench.timing.machine import identify; print(identify()["id"])')
# asv's timed processes run the machine's own kernels: the variables that force a BLAS or oneDNN
# kernel are unset for it (bnbench.timing.kernels; run-info.json records what was removed)
UNSET_KERNEL_OVERRIDES = $$($(VENV)/bin/python -c 'from bnbench.timing.kernels import OVERRIDES; print(" ".join("-u " + name for name in OVERRIDES))')
bench: system-packages $(STAMP) $(ENV_STAMPS)
ifeq ($(GRID),quick)
	@id=$(MACHINE_ID) && mkdir -p results/compare/$$id; \
	status=0; for size in $(COMPARE_SIZES); do \
		echo "bnbench compare: every framework's best mode, $$size, float32, cpu, $(BUDGET) s of rounds over $(SETS) sets of workers (machine $$id)"; \
		$(VENV)/bin/bnbench compare --size $$size --dtype float32 --device cpu --budget $(BUDGET) --sets $(SETS) --threads $(THREADS) \
			--json results/compare/$$id/cpu-$$size-float32.json || status=1; \
	done; \
	$(VENV)/bin/bnbench report && echo "tables: results/README.md"; \
	$(VENV)/bin/python -m bnbench.comparisons.compare $(foreach size,$(COMPARE_SIZES),results/compare/$$id/cpu-$(size)-float32.json); \
	exit $$status
else
	@id=$(MACHINE_ID); $(VENV)/bin/asv machine --yes --machine $$id > /dev/null && \
	$(VENV)/bin/python -m bnbench.verification.asvenvs runinfo --machine $$id --grid $(GRID) --threads $(THREADS) && \
	env $(UNSET_KERNEL_OVERRIDES) BNBENCH_ENVS=$(CURDIR)/$(ENVS) BNBENCH_GRID=$(GRID) BNBENCH_THREADS=$(THREADS) $(VENV)/bin/asv run --machine $$id \
		--environment existing:$(CURDIR)/$(VENV)/bin/python --set-commit-hash $$(git rev-parse HEAD) --show-stderr \
		-b "$(BENCH_REGEX)" $(ASV_ARGS); asv_status=$$?; \
	$(VENV)/bin/bnbench verify --machine $$id --json results/verify/$$id/main.json --dtype float32 --dtype float64 \
		--device cpu > /dev/null; verify_status=$$?; \
	$(VENV)/bin/bnbench conventions --out results > /dev/null && \
	$(VENV)/bin/bnbench frameworks --probe --json > results/.frameworks.json && mv results/.frameworks.json results/frameworks.json && \
	$(VENV)/bin/bnbench report && \
	$(VENV)/bin/asv publish > /dev/null 2>&1; \
	echo "tables: results/README.md; html: .asv/html/index.html"; \
	test $$asv_status -eq 0 -a $$verify_status -eq 0
endif

# How each framework's cost grows with the work: the batch and the width sweeps of every framework
# of the main environment (bnbench scale, SCALE_BUDGET seconds of rounds per point), then the tables.
SCALE_BUDGET ?= 20
scale: system-packages $(STAMP) $(ENV_STAMPS)
	@for axis in batch width; do \
		echo "bnbench scale --axis $$axis (budget $(SCALE_BUDGET) s per point)"; \
		$(VENV)/bin/bnbench scale --axis $$axis --budget $(SCALE_BUDGET) --threads $(THREADS) || exit 1; \
	done
	@$(VENV)/bin/bnbench report > /dev/null && echo "tables: results/README.md (section: how cost grows with the work)"

# The lecture's claims measured on digits (bnbench study; about a minute in all on 2 cores), then
# the tables that link them. The frameworks study reads the published comparisons (make bench).
lecture: $(STAMP)
	@for name in $$($(VENV)/bin/python -c 'from bnbench.lecture import STUDIES; print(" ".join(STUDIES))'); do \
		$(VENV)/bin/bnbench study $$name || exit 1; \
	done
	@$(VENV)/bin/bnbench report > /dev/null && echo "tables: results/README.md (section: the lecture's claims)"

# Every framework's tuning log (bnbench tunelog: each form against the kept one, tiny and large,
# TUNELOG_BUDGET seconds of rounds per size; 2-4 minutes a framework on 2 cores), then the tables.
TUNELOG_BUDGET ?= 30
TUNELOG_FRAMEWORKS ?= $(shell $(VENV)/bin/python -c 'from bnbench.comparisons.tunelog import loggable; print(" ".join(loggable()))' 2>/dev/null)
tunelogs: system-packages $(STAMP) $(ENV_STAMPS)
	@for name in $(TUNELOG_FRAMEWORKS); do \
		echo "bnbench tunelog --framework $$name (budget $(TUNELOG_BUDGET) s per size)"; \
		$(VENV)/bin/bnbench tunelog --framework $$name --budget $(TUNELOG_BUDGET) --threads $(THREADS) --quiet || exit 1; \
	done
	@$(VENV)/bin/bnbench report > /dev/null && echo "tables: results/README.md (tuning logs: results/tuning-logs/)"

clean-env:
	rm -rf $(VENV) $(ENVS)
