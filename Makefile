# The two commands a fresh machine needs:  make run   and   make test
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PACKAGES := libs/cdp_proto libs/cdp_core libs/cdp_sim libs/cdp_cli bench services/ingest services/identity services/profile services/segment services/prediction
PYPROJECTS := $(addsuffix /pyproject.toml,$(PACKAGES))

.PHONY: install run test test-unit lint proto proto-check chart-check bench down clean

install: $(STAMP)

$(STAMP): constraints.txt requirements-dev.txt $(PYPROJECTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt setuptools
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-build-isolation -c constraints.txt \
		-r requirements-dev.txt $(addprefix -e ,$(PACKAGES))
	touch $(STAMP)

run: install
	$(BIN)/cdp dev up
	$(BIN)/cdp demo
	@echo "Serving; press Ctrl-C to stop the stack."
	@trap '$(BIN)/cdp dev down; exit 0' INT TERM; while true; do sleep 3600; done

test: install proto-check lint
	$(BIN)/python -m pytest

test-unit: install
	$(BIN)/python -m pytest -m "not component and not integration"

lint: install
	$(BIN)/ruff check libs services bench tests

proto: install
	$(BIN)/python libs/cdp_proto/generate.py

proto-check: install
	$(BIN)/python libs/cdp_proto/generate.py --check

bench: install
	$(BIN)/cdp bench ingest
	$(BIN)/cdp bench latency

down: install
	$(BIN)/cdp dev down

clean:
	rm -rf $(VENV) .cdp .pytest_cache

chart-check: install
	$(BIN)/python -m pytest tests/deploy -q
