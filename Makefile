# The verbs a user says. `make up` needs only Python 3.11 and pip; uv is bootstrapped if absent.
SHELL := /bin/bash
# uv from PATH, else the uv package of this Python (`python3 -m uv` finds its binary wherever pip put it).
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := python3 -m uv
endif
export UV_COMPILE_BYTECODE := 1

.PHONY: up down status test bench install lint clean simulate

install:
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv || python3 -m pip install --quiet --user uv
	@$(UV) sync --frozen --quiet --extra production

up: install
	@$(UV) run --frozen --no-sync python scripts/stack.py up

down:
	@$(UV) run --frozen --no-sync python scripts/stack.py down

status:
	@$(UV) run --frozen --no-sync python scripts/stack.py status

simulate:
	@$(UV) run --frozen --no-sync python scripts/simulate.py

test: install
	@$(UV) run --frozen --no-sync python -m pytest

lint: install
	@$(UV) run --frozen --no-sync ruff check .

bench: install
	@$(UV) run --frozen --no-sync python benchmarks/dag_parse_time.py

clean: down
	rm -rf .state
