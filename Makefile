# csta-book: the single entry script.
#   make book [PROFILE=smoke|quick|paper]   set up .venv, check/fetch the data the notebooks need, run them
#                                            with papermill, build _build/html
#   make test                                set up .venv, run the whole test suite
#   make lab                                 set up .venv, start JupyterLab on notebooks/ (127.0.0.1 only), e.g.
#                                            for the live attention explorer of chapter 7
# Both create .venv on first use and (re)install the project with every extra it needs (EXTRAS, see
# pyproject.toml: `pip install .` alone gives only the method and the command line's core) when pyproject.toml
# changes.
# `make book` first works out which data files the profile needs; missing public ones are downloaded into
# data/ when the machine is online, otherwise it stops at once (exit 2) with a table of what to put where.
# BOOK_FLAGS passes options to the build, e.g. BOOK_FLAGS=--no-fetch (never download; also CSTA_NO_FETCH=1).

PYTHON  ?= python3
PROFILE ?= quick
BOOK_FLAGS ?=
LAB_FLAGS ?=
EXTRAS  := book,video,ray,dev
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.csta-installed

.PHONY: book test lab venv vendor clean help

help:
	@echo "make book [PROFILE=smoke|quick|paper]  - fetch/check the data, execute the notebooks, build _build/html"
	@echo "          [BOOK_FLAGS=--no-fetch]        - never download data (a missing file stops the build with a table)"
	@echo "make test                              - run the test suite"
	@echo "make lab [LAB_FLAGS=--port=8899]       - JupyterLab on notebooks/, this machine only (no network needed)"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "error: csta needs Python >= 3.11; '$(PYTHON)' is $$($(PYTHON) --version 2>&1 || echo missing)." \
	       "Install it, or run make PYTHON=/path/to/python3.11 ..." >&2; exit 2; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { \
	  echo "error: '$(PYTHON) -m venv $(VENV)' failed (on Debian/Ubuntu: apt-get install python3-venv);" \
	       "remove $(VENV) and rerun" >&2; exit 2; }
	@$(PY) -m pip install --quiet --upgrade pip || \
	  echo "warning: could not upgrade pip in $(VENV) (offline?); trying with the pip it has" >&2
	@$(PY) -m pip install --quiet -e '.[$(EXTRAS)]' || { \
	  echo "error: installing csta and its dependencies (pyproject.toml, extras $(EXTRAS)) into $(VENV) failed; see pip's" \
	       "message above. It needs PyPI (network) and a few GB of disk; rerun make when fixed" >&2; exit 2; }
	@touch $(STAMP)

venv: $(STAMP)

# Offline JavaScript for the book (require.js, the ipywidgets HTML manager, MathJax), from npm.
vendor: $(STAMP)
	$(PY) -m csta_lib.book.vendor

# The build checks the data first, then vendors the JavaScript (as `make vendor`), then runs the notebooks.
book: venv
	$(PY) -m csta_lib.book.build --profile $(PROFILE) $(BOOK_FLAGS)

test: venv vendor
	$(PY) -m pytest

# JupyterLab serves its own files; listening on loopback only, with its usual token (printed in the URL).
lab: venv
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=notebooks --ServerApp.ip=127.0.0.1 $(LAB_FLAGS)

clean:
	rm -rf _build book/_generated
