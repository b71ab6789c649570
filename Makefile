# The two set-up commands: `make demo` and `make test` each create .venv and install what they need.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint docs dist test-min bench clean chromium messages

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

# The Korean report needs a font with Hangul (tests/test_browser_learn.py checks every glyph):
# Debian's fonts-noto-cjk, installed when fontconfig knows no Korean font.
chromium:
	@if [ ! -x $(CHROMIUM) ]; then \
		$(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
	fi
	@test -x $(CHROMIUM) || { echo "make chromium: $(CHROMIUM) is still missing" >&2; exit 1; }
	@if [ -z "$$(fc-list :lang=ko 2>/dev/null)" ]; then \
		$(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y fonts-noto-cjk; \
	fi
	@test -n "$$(fc-list :lang=ko)" || { echo "make chromium: no font with Hangul (fonts-noto-cjk)" >&2; exit 1; }

# The Korean catalogue: the message ids collected from the source merged into
# descend/locale/ko/LC_MESSAGES/descend.po (translations kept), descend.mo compiled beside it;
# lists the ids still to translate (tests/test_i18n.py fails on any).
messages: $(STAMP)
	$(BIN)/python tests/catalogue.py

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

# The suite at the lowest versions pyproject.toml declares (.ci/min-versions.txt: numpy, pyarrow,
# tqdm and the extras' libraries) with torch 2.13.0, the declared torch minimum, in .venv-min.
# The export extras (tensorboard, mlflow-skinny) and shtab come at the versions pip picks: their
# minimums are not pinned here.
# Python 3.10, the declared minimum, has no CPU torch wheel here: the suite runs on python3, and
# every module is parsed by python3.10 (mypy also checks at python_version 3.10).
MIN_VENV := .venv-min
PY310 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.10*/bin/python3.10) python3.10)
MIN_STAMP := $(MIN_VENV)/.installed

$(MIN_STAMP): pyproject.toml .ci/min-versions.txt
	rm -rf $(MIN_VENV)
	$(PY) -m venv $(MIN_VENV)
	$(MIN_VENV)/bin/pip install --quiet --upgrade pip
	$(MIN_VENV)/bin/pip install --quiet torch==2.13.0
	$(MIN_VENV)/bin/pip install --quiet -c .ci/min-versions.txt \
		-e '.[plot,problems,pandas,sklearn,tensorboard,mlflow]' scipy pytest hypothesis babel
	touch $(MIN_STAMP)

test-min: $(MIN_STAMP)
	@$(MIN_VENV)/bin/python -c "import sys, numpy, pyarrow, tqdm, torch, pandas, sklearn, scipy, matplotlib; \
	print('test-min: python', sys.version.split()[0], 'torch', torch.__version__, 'numpy', numpy.__version__, \
	'pyarrow', pyarrow.__version__, 'tqdm', tqdm.__version__, 'pandas', pandas.__version__, \
	'scikit-learn', sklearn.__version__, 'scipy', scipy.__version__, 'matplotlib', matplotlib.__version__)"
	@if $(PY310) -c pass 2>/dev/null; then \
		$(PY310) -c "import ast, pathlib; [ast.parse(p.read_text(), str(p)) for p in pathlib.Path('descend').rglob('*.py')]" \
		&& echo "test-min: every module of descend/ parses on $$($(PY310) -V)"; \
	else echo "test-min: no python3.10 here (PY310=$(PY310)), its parse check skipped"; fi
	$(MIN_VENV)/bin/pytest -q -p no:cacheprovider -m "not package" --ignore tests/test_browser.py --ignore tests/test_browser_learn.py \
		$(addprefix --deselect ,$(MIN_ORACLE_TESTS))

# Two tests compare with an oracle whose own answer moves with its version: scipy 1.10's MINPACK
# stops at a worse point on MGH 20 than descend (0.002606 vs 0.002288), and scikit-learn 1.3's
# LogisticRegression is looser than 1e-5 on the breast-cancer optimum. make test runs both.
MIN_ORACLE_TESTS := \
	'tests/test_lsq.py::test_least_squares_reaches_the_optimum_of_the_mgh_problem_to_six_digits[20]' \
	tests/test_problems.py::test_breast_cancer_optimum_matches_sklearn

bench: $(STAMP)
	$(BIN)/python benchmarks/loop_overhead.py
	$(BIN)/python benchmarks/startup.py

clean:
	rm -rf $(VENV) $(MIN_VENV) dist docs/api .pytest_cache .mypy_cache .ruff_cache *.egg-info
