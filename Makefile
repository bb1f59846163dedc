# Two entry points: `make demo` and `make test`. Each builds .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "otprobe needs Python 3.11 or newer")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { echo "python3 -m venv failed: install your distribution's python3-venv package"; exit 1; }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/otprobe demo

test: $(STAMP)
	$(PY) -m ruff check otprobe simulators tests bench
	$(PY) -m pytest

# bench_stress.py takes kernel packet stamps when tcpdump can capture on lo: installed here only as root with
# apt-get, and never needed (without it the bench uses the simulated devices' own stamps)
bench: $(STAMP)
	@if ! command -v tcpdump >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get install -y -qq tcpdump >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && \
		apt-get install -y -qq tcpdump >/dev/null 2>&1; } || echo "tcpdump not installed: bench_stress.py uses the devices' stamps"; \
	fi
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
