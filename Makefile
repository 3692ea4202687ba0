# astrotool: `make demo` and `make test` work on a fresh clone (they create .venv).
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
ASTRO   = $(VENV)/bin/astro
PLUGINS = plugins/dre plugins/lens plugins/plato plugins/ztf
STAMP   = $(VENV)/.astrotool-installed
DEMO_DIR ?= demo-workspace

.PHONY: install demo test docs bench clean

install: $(STAMP)

$(STAMP): pyproject.toml $(addsuffix /pyproject.toml,$(PLUGINS))
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,ml]" $(addprefix -e ,$(PLUGINS))
	@touch $@

demo: $(STAMP)
	rm -rf $(DEMO_DIR)
	$(ASTRO) demo $(DEMO_DIR)

test: $(STAMP)
	$(PY) -m pytest -q

docs: $(STAMP)
	$(PY) docs/build.py

bench: $(STAMP)
	@for b in benchmarks/[!_]*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(DEMO_DIR) docs/_build .pytest_cache
