# Two entry points for a fresh machine: `make run` and `make test`. Both build .venv first.
# torch is installed pinned and alone, before anything that depends on it, so pip takes the
# CPU wheel on disk instead of resolving a bare `torch` to a multi-GB CUDA build.
# --no-compile: pip would byte-compile every module of every package (torch alone has
# thousands); Python compiles the few hundred a run imports on first use instead.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
# Bytecode: every Python process of a run or of the tests (test workers, `accelerate launch`'s
# processes, the CLI's) imports torch, transformers and mcit, thousands of modules. With
# PYTHONDONTWRITEBYTECODE set (some shells and images set it) nothing is cached and each process
# compiles them again: 6.4 s to import mcit.runner instead of 2.9 s. So the first process writes
# the bytecode, under .venv/pycache (PYTHONPYCACHEPREFIX: the source tree stays clean), and the
# others read it. docs/RESULTS.md, "Test suite", has the measurement.
unexport PYTHONDONTWRITEBYTECODE
export PYTHONPYCACHEPREFIX := $(CURDIR)/$(VENV)/pycache

.PHONY: run test install clean
install: $(VENV)/.installed

# `make run` needs the package only; `make test` adds the test extra (pytest, the ~100 MB
# pycocoevalcap wheel the caption scorer's tests use, lm_eval and tensorboard).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --no-compile "$(TORCH)"
	$(BIN)/pip install --quiet --no-compile -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet --no-compile -e ".[test]"
	touch $@

run: install
	$(BIN)/mcit run $(ARGS)

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -n auto --dist loadscope --durations=15 $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) runs
