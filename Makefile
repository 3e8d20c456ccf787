# The verbs a user says. `make up` needs only Python 3.11 and pip; uv is bootstrapped if absent.
SHELL := /bin/bash
# uv from PATH, else the uv package of this Python (`python3 -m uv` finds its binary wherever pip put it).
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := python3 -m uv
endif
export UV_COMPILE_BYTECODE := 1

.PHONY: up down status test browser bench install lint clean simulate replay init train

install:
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv || python3 -m pip install --quiet --user uv
	@$(UV) sync --frozen --quiet --extra production

up: install
	@$(UV) run --frozen --no-sync python scripts/stack.py up

down:
	@$(UV) run --frozen --no-sync python scripts/stack.py down

status:
	@$(UV) run --frozen --no-sync python scripts/stack.py status

# Bring your own table: make init DATA=path/to/table.csv TARGET=column NAME=name [TASK=binary|multiclass|regression]
# [FORCE=1: draft again over an existing config and suite; the days it lands again keep their old files]
init: install
	@test -n "$(DATA)" -a -n "$(TARGET)" -a -n "$(NAME)" || { echo "usage: make init DATA=table.csv TARGET=column NAME=name [TASK=...]"; exit 2; }
	@$(UV) run --frozen --no-sync mlops-loop init "$(DATA)" --target "$(TARGET)" --name "$(NAME)" $(if $(TASK),--task "$(TASK)") $(if $(FORCE),--force)

# Train one model on the running stack and follow it: make train MODEL=name
train:
	@test -n "$(MODEL)" || { echo "usage: make train MODEL=name"; exit 2; }
	@$(UV) run --frozen --no-sync mlops-loop train "$(MODEL)"

# Replay a model's later history through the running stack: make replay MODEL=name SOURCE=later.csv [ARGS="--shift ..."]
# (the stack's environment from its env.sh, as the CLI's users source it). `make simulate`: the flights' 2013.
replay:
	@test -n "$(MODEL)" || { echo "usage: make replay MODEL=name [SOURCE=later.csv] [ARGS='--every 7 --shift SPEC']"; exit 2; }
	@env_sh="$${MLOPS_HOME:-.state}/env.sh"; if [ -f "$$env_sh" ]; then . "$$env_sh"; fi; \
	  $(UV) run --frozen --no-sync mlops-loop replay "$(MODEL)" $(if $(SOURCE),--source "$(SOURCE)") $(ARGS)

simulate:
	@$(MAKE) --no-print-directory replay MODEL=flights_delay

test: install browser
	@$(UV) run --frozen --no-sync python -m pytest

# The browser tests drive Debian's chromium (never a browser downloaded by Playwright).
browser:
	@test -x /usr/bin/chromium || { echo "installing Debian's chromium for the browser tests..."; \
	  apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
	  || echo "could not install chromium (apt-get, as root): the browser tests will fail"; }

lint: install
	@$(UV) run --frozen --no-sync ruff check .

bench: install
	@$(UV) run --frozen --no-sync python benchmarks/dag_parse_time.py

clean: down
	rm -rf .state
