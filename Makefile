# One entry point per task; `make help` lists them.
# Every target that needs Python sets up the environment first (quick when done).

SHELL := /bin/bash
PAPERS := magneto beit2 maskdistill beit3 g2sd imted lda conformer kosmos2 kosmos_g
VENV ?= .venv
PY := $(VENV)/bin/python
OUT ?= results
# Extra arguments for train / eval / verify / repro, e.g.
#   make beit2-train ARGS="--config beit2/configs/pretrain_tiny.yaml --set train.lr=1e-3"
ARGS ?=
# pytest selection, e.g. PYTEST_ARGS="-m 'unit and not slow'"
PYTEST_ARGS ?=
TEST_DIRS = common/tests tests $(wildcard $(addsuffix /tests,$(PAPERS)))

.PHONY: help setup doctor test repro bench clean-results $(PAPERS:%=%-setup) $(PAPERS:%=%-test) \
	$(PAPERS:%=%-train) $(PAPERS:%=%-eval) $(PAPERS:%=%-repro) $(PAPERS:%=%-verify)

help:
	@echo "make setup        create/refresh .venv with the whole stack (idempotent)"
	@echo "make test         run every test (what CI runs)"
	@echo "make repro        every paper's mini reproduction -> $(OUT)/REPRO.md + plots"
	@echo "make bench        speed benchmarks -> $(OUT)/BENCH.md"
	@echo "make doctor       versions that matter, checked against the pins"
	@echo "make P-setup      P/.venv with only paper P's pins (P in: $(PAPERS))"
	@echo "make P-test | P-train | P-eval | P-repro | P-verify   (pass arguments with ARGS=...)"

setup:
	@bash tools/setup_env.sh

doctor: setup
	@$(PY) tools/doctor.py

test: setup
	$(PY) -m pytest $(TEST_DIRS) $(PYTEST_ARGS)

repro: setup
	$(PY) -m vlcore.report --run --out $(OUT) $(ARGS)

bench: setup
	$(PY) -m vlcore.bench --out $(OUT) $(ARGS)

$(PAPERS:%=%-setup): %-setup:
	@bash tools/setup_env.sh --paper $*

$(PAPERS:%=%-test): %-test: setup
	$(PY) -m pytest $(wildcard $*/tests) $(PYTEST_ARGS)

$(PAPERS:%=%-train): %-train: setup
	$(PY) -m $*.train $(ARGS)

$(PAPERS:%=%-eval): %-eval: setup
	$(PY) -m $*.eval $(ARGS)

$(PAPERS:%=%-repro): %-repro: setup
	$(PY) -m vlcore.report --run --papers $* --out $(OUT) $(ARGS)

$(PAPERS:%=%-verify): %-verify: setup
	$(PY) -m $*.verify $(ARGS)

clean-results:
	rm -rf $(OUT)
