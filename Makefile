# The two commands of the README: `make app` and `make test`. Both install what they need first.
PYTHON ?= python3
PIP = $(PYTHON) -m pip install --quiet --disable-pip-version-check

.PHONY: install install-dev app test lint

install:
	$(PIP) -r requirements.txt
	$(PIP) --no-deps -r requirements-nodeps.txt

install-dev: install
	$(PIP) -r requirements-dev.txt

app: install
	$(PYTHON) app.py

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

test: install-dev lint
	$(PYTHON) -m pytest -q
