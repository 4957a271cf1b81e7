# The two set-up commands (see README.md):
#   make run    install, start RabbitMQ/PostgreSQL if needed, run every service and the demo
#   make test   install, start RabbitMQ/PostgreSQL if needed, run the whole test suite
PYTHON ?= python3
VENV   := .venv
STAMP  := $(VENV)/.installed

.PHONY: run test up bench-funding bench-pie bench-window bench-margin bench-contracts install services clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

services:
	./scripts/ensure-services.sh

run: install services
	$(VENV)/bin/m1 up --demo

up: install services
	$(VENV)/bin/m1 up

test: install services
	$(VENV)/bin/pytest

bench-funding: install services
	$(VENV)/bin/python bench/funding.py

bench-pie: install
	$(VENV)/bin/python bench/pie.py

bench-window: install services
	$(VENV)/bin/python bench/window.py

bench-margin: install services
	$(VENV)/bin/python bench/margin.py

bench-contracts: install
	$(VENV)/bin/python bench/contracts.py

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis *.egg-info
