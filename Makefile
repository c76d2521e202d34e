# pyelog: every target works on a fresh Debian machine of this kind, as root.
PY := .venv/bin/python

.PHONY: setup test demo bench clean

setup:
	./setup.sh

test: setup
	$(PY) -m pytest -ra

# Record a TCP workload in its own network namespace, write demo.elog, show it.
demo: setup
	$(PY) -m pyelog.demo demo.elog

# Reserved: arrives with its issue (benchmarks).

bench: setup
	@echo "make bench: not implemented yet (issue 7)"; exit 1

clean:
	rm -rf .venv build *.egg-info .pytest_cache
