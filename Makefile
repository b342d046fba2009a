# The two commands a newcomer needs:
#   make demo   - set up, start the sandbox hosts, provision them with site.yml, run the verify playbook
#   make test   - lint, unit tests and every molecule scenario
SHELL := /bin/bash
VENV := .venv/bin
export PATH := $(CURDIR)/.venv/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_VAULT_PASSWORD_FILE := $(CURDIR)/inventories/local/vault-password.txt
export ANSIBLE_FORCE_COLOR ?= 0
SCENARIOS ?= default

.PHONY: setup demo sandbox verify down test lint unit molecule bench bench-e2e clean

setup:
	scripts/setup.sh

sandbox: setup
	ansible-playbook -i inventories/local playbooks/sandbox.yml

demo: sandbox
	ansible-playbook -i inventories/local site.yml
	ansible-playbook -i inventories/local playbooks/verify.yml
	@scripts/urls.sh

verify:
	ansible-playbook -i inventories/local playbooks/verify.yml

down:
	ansible-playbook -i inventories/local playbooks/sandbox.yml -e sandbox_state=absent

# lint runs beside the unit tests (neither needs Docker, and the unit tests
# wait on the servers they start), its log printed after them; then molecule.
test: setup
	@mkdir -p build/logs; \
	$(MAKE) --no-print-directory lint > build/logs/lint.log 2>&1 & lint_pid=$$!; \
	$(MAKE) --no-print-directory unit; unit_rc=$$?; \
	wait $$lint_pid; lint_rc=$$?; \
	echo "--- make lint (exit $$lint_rc), run beside the unit tests:"; cat build/logs/lint.log; \
	[ $$unit_rc -eq 0 ] && [ $$lint_rc -eq 0 ]
	$(MAKE) --no-print-directory molecule

lint:
	yamllint -s .
	ansible-lint --profile production
	ruff check .
	ruff format --check .

# OBS_REQUIRE_TOOLS=1: a missing real-binary tool (promtool, amtool,
# alertmanager in build/tools) fails the run instead of skipping its tests.
unit:
	OBS_REQUIRE_TOOLS=1 pytest -q --durations=15 tests/unit

# Each line stamped with the time, so a CI log shows where the minutes go.
molecule:
	set -eo pipefail; for s in $(SCENARIOS); do \
	  PYTHONUNBUFFERED=1 molecule test -s $$s 2>&1 | while IFS= read -r line; do printf '%(%H:%M:%S)T %s\n' -1 "$$line"; done; \
	done

bench: setup
	bench/converge.sh
	.venv/bin/python bench/fleet.py
	$(MAKE) demo
	bench/converge.sh sandbox
	.venv/bin/python bench/mttd.py
	.venv/bin/python bench/jaeger_spans.py --spans-per-trace 20
	.venv/bin/python bench/mttd_model.py
	.venv/bin/python bench/app_overhead.py

# Alert accuracy and dashboard load run against the converged molecule
# scenario (its fast_alerting timings): `molecule converge` first.
bench-e2e:
	.venv/bin/python bench/alert_accuracy.py --json bench/results/alert_accuracy.json
	.venv/bin/python bench/dashboard_load.py --scrape-interval 5 --json bench/results/dashboard_load.json

clean: down
	rm -rf build
