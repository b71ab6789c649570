# The two set-up commands: `make demo` and `make test` each create .venv and install what they need.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint docs dist test-min bench clean chromium

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/descend demo

lint: $(STAMP)
	$(BIN)/ruff check descend tests benchmarks
	$(BIN)/mypy

# The browser tests drive Debian's Chromium through Playwright (never `playwright install`, which
# downloads a browser build). `make test` installs it when missing; `make demo` does not need it.
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

chromium:
	@if [ ! -x $(CHROMIUM) ]; then \
		$(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
	fi
	@test -x $(CHROMIUM) || { echo "make chromium: $(CHROMIUM) is still missing" >&2; exit 1; }

# The API reference from the docstrings (pdoc, Google style) into docs/api/ (git-ignored).
# Any warning pdoc prints fails the target, so the reference cannot rot.
docs: $(STAMP)
	rm -rf docs/api
	$(BIN)/pdoc --docformat google -o docs/api descend 2> $(VENV)/pdoc.log; \
	status=$$?; cat $(VENV)/pdoc.log >&2; \
	if [ $$status -ne 0 ] || [ -s $(VENV)/pdoc.log ]; then \
		echo "make docs: pdoc failed or warned (above)" >&2; exit 1; fi
	@echo "make docs: docs/api/index.html"

# The wheel and the sdist in dist/, checked by twine (metadata, README rendering).
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist . > $(VENV)/build.log 2>&1 || { cat $(VENV)/build.log >&2; exit 1; }
	$(BIN)/twine check --strict dist/*

# tests/test_package.py checks these and installs the wheel (no extras) into a fresh venv.
test: $(STAMP) lint docs dist chromium
	DESCEND_DIST=dist $(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/loop_overhead.py
	$(BIN)/python benchmarks/startup.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
