# SPDX-License-Identifier: BSD-2-Clause
# pyelog: every target works on a fresh Debian machine of this kind, as root.
PY := .venv/bin/python

.PHONY: setup test demo bench soak clean wheel-check fuzz

# PYELOG_SPARK=1: Java and pyspark too, for tests/test_spark.py.
setup:
	PYELOG_SPARK=1 ./setup.sh

test: setup
	$(PY) -m pytest -ra

# The wheel, installed into a fresh venv outside the checkout, works there:
# selftest, a live capture, -r and summary on it (.ci/wheel-check).
wheel-check: setup
	.ci/wheel-check

# Record a TCP workload in its own network namespace, write demo.elog, show it.
demo: setup
	$(PY) -m pyelog.tools.demo demo.elog

# Benchmarks (bench/README.md): recorder, producer, workload, decoder, scale, fleet,
# host in under 10 minutes; soak records for 10 minutes. DECODER_SIZE=64M FLEET_EVENTS=10M
# for a quick run.
bench: setup
	PY=$(PY) bench/run.sh bench

soak: setup
	PY=$(PY) bench/run.sh soak

# Hostile input for longer than `make test` tries it (tests/test_fuzz.py):
# every property with 20 times its examples, from a random start; failures
# are kept in .hypothesis/ and replayed first next time. FUZZ=N: N times.
fuzz: setup
	PYELOG_FUZZ=$(or $(FUZZ),20) $(PY) -m pytest -ra tests/test_fuzz.py

# Kernel tests inside a Debian 12 VM (Vagrant + libvirt, vagrant/README.md):
# pyelog selftest, tests/test_tcp_capture.py and a capture decoded here;
# FULL=1: the whole suite; TESTS="tests/test_ring.py -k chunk": those tests.
.PHONY: vm-test
vm-test: setup
	FULL="$(FULL)" TESTS="$(TESTS)" vagrant/vm-test.sh

clean:
	rm -rf .venv build *.egg-info .pytest_cache
