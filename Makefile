# pyelog: every target works on a fresh Debian machine of this kind, as root.
PY := .venv/bin/python

.PHONY: setup test demo bench clean

setup:
	./setup.sh

test: setup
	$(PY) -m pytest -ra

# Reserved: arrive with their issues (live capture demo, benchmarks).
demo: setup
	@echo "make demo: not implemented yet (issue 6)"; exit 1

bench: setup
	@echo "make bench: not implemented yet (issue 7)"; exit 1

clean:
	rm -rf .venv build *.egg-info .pytest_cache
