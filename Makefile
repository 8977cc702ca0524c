# One place for set-up: `make serve` runs the product, `make test` runs the tests.
# VENV can point outside the clone (.ci/run does this) so repeated CI runs share one environment.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install serve test test-slow lint info clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	$(VENV)/bin/invdn serve --host 127.0.0.1 --port 8000

info: $(STAMP)
	$(VENV)/bin/invdn info

test: $(STAMP)
	$(VENV)/bin/ruff check invdn invdn_service tests benchmarks scripts
	$(VENV)/bin/python -m pytest

test-slow: $(STAMP)
	$(PY) -m pip install -q -e ".[dev,ray]"  # the Ray tests are slow ones
	$(VENV)/bin/python -m pytest -m slow

clean:
	rm -rf $(VENV) .pytest_cache
