# astrotool: `make demo` and `make test` work on a fresh clone (they create .venv).
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
ASTRO   = $(VENV)/bin/astro
PLUGINS = plugins/dre plugins/lens plugins/plato plugins/ztf
STAMP   = $(VENV)/.astrotool-installed
DEMO_DIR ?= demo-workspace
# torch for the `ml` extra: auto = the CPU build when no NVIDIA GPU (no nvidia-smi) and torch is not
# installed yet, else PyPI's default (CUDA) build; TORCH=cpu or TORCH=cuda forces one; TORCH_INDEX=URL
# names the wheel index of the CPU build (unreachable: falls back to PyPI).
TORCH       ?= auto
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
# test workers (pytest-xdist): auto = one per physical CPU core (logical where psutil is missing), at most 4; TEST_JOBS=0 runs the suite in this process
TEST_JOBS   ?= auto

.PHONY: install demo test docs bench clean

install: $(STAMP)

$(STAMP): pyproject.toml $(addsuffix /pyproject.toml,$(PLUGINS))
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@# the core's distribution was once called `astrotool` (a different project on PyPI): drop it
	@if $(PY) -m pip show astrotool >/dev/null 2>&1; then $(PY) -m pip uninstall --quiet -y astrotool; fi
	@rm -rf astrotool.egg-info
	@torch=$(TORCH); \
	if [ "$$torch" = auto ]; then \
	  if $(PY) -c "import torch" >/dev/null 2>&1; then torch=installed; \
	  elif command -v nvidia-smi >/dev/null 2>&1; then torch=cuda; else torch=cpu; fi; fi; \
	case "$$torch" in \
	  installed) echo "torch: keeping the installed $$($(PY) -c 'import torch; print(torch.__version__)')";; \
	  cuda) echo "torch: PyPI's default (CUDA) build (TORCH=cuda, or an NVIDIA GPU was found)";; \
	  cpu) echo "torch: the CPU build from $(TORCH_INDEX) (TORCH=cpu, or no NVIDIA GPU found; TORCH=cuda for the CUDA build)"; \
	       $(PY) -m pip install --quiet --timeout 20 --retries 1 --index-url $(TORCH_INDEX) "torch>=2.4" || \
	       { echo "torch: $(TORCH_INDEX) unreachable, installing torch from PyPI instead"; \
	         $(PY) -m pip install --quiet "torch>=2.4"; };; \
	  *) echo "TORCH=$$torch: expected auto, cpu or cuda" >&2; exit 2;; \
	esac
	$(PY) -m pip install --quiet -e ".[dev,ml]" $(addprefix -e ,$(PLUGINS))
	@touch $@

demo: $(STAMP)
	rm -rf $(DEMO_DIR)
	$(ASTRO) demo $(DEMO_DIR)

test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_JOBS) --maxprocesses=4

docs: $(STAMP)
	$(PY) docs/build.py

bench: $(STAMP)
	@failed=""; for b in benchmarks/[!_]*.py; do echo "== $$b"; $(PY) $$b || failed="$$failed $$b"; done; \
	if [ -n "$$failed" ]; then echo "failed:$$failed" >&2; exit 1; fi

clean:
	rm -rf $(DEMO_DIR) docs/_build .pytest_cache
