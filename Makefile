# csta-book: the single entry script.
#   make book [PROFILE=smoke|quick|paper]   set up .venv, run the notebooks with papermill, build _build/html
#   make test                                set up .venv, run the whole test suite
# Both create .venv on first use and (re)install the project when pyproject.toml changes.

PYTHON  ?= python3
PROFILE ?= quick
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.csta-installed

.PHONY: book test venv vendor clean help

help:
	@echo "make book [PROFILE=smoke|quick|paper]  - execute the notebooks and build the book into _build/html"
	@echo "make test                              - run the test suite"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	@touch $(STAMP)

venv: $(STAMP)

# Offline JavaScript for the book (require.js, the ipywidgets HTML manager, MathJax), from npm.
vendor: $(STAMP)
	$(PY) -m csta_lib.book.vendor

book: venv vendor
	$(PY) -m csta_lib.book.build --profile $(PROFILE)

test: venv vendor
	$(PY) -m pytest

clean:
	rm -rf _build book/_generated
