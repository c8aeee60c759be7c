# Two commands: `make run` and `make test`. Both build .venv in the repo root first.
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
# A CPU build of torch is installed first so pip does not pick a multi-GB CUDA build.
TORCH  ?= torch==2.13.0
# Extra pytest arguments, e.g. make test ARGS="tests/test_review_store.py -x"
ARGS   ?=

.PHONY: run test lint venv clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH)"
	$(PIP) install -q -e ".[tools,sandbox,data,synthesis,bench,dev]"
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(PY) app.py

# Tests whose system package is missing skip, and the last block says how to run them (CI=true fails them).
# pytest's exit code 5 means nothing was collected: said plainly, and still a failure.
test: $(STAMP)
	@HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest -q $(ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests (ARGS=$(ARGS))" >&2; fi; \
	exit $$status

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache
