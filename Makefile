# make test: cargo test, then build the release wheel, install it into .venv and run pytest.
# make bench: the benchmark suite against the reference implementations.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= release
STAMP_TEST := $(VENV)/.stamp-test
STAMP_BENCH := $(VENV)/.stamp-bench
export MATURIN_NO_INSTALL_RUST := 1

.PHONY: test bench wheel venv rust-test py-test lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP_TEST): requirements/test.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements/test.txt
	touch $@

# Each reference on its own: one that fails to install is reported as missing
# by the suite, and the rest still runs. The test pins constrain them, so a
# reference never moves numpy, pandas or scikit-learn under our tests.
$(STAMP_BENCH): requirements/bench.txt requirements/references.txt requirements/test.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements/bench.txt
	grep -v -E '^\s*(#|$$)' requirements/references.txt | while read -r req; do \
		$(PY) -m pip install --quiet -c requirements/test.txt "$$req" || echo "make bench: could not install $$req; it is reported as missing"; \
	done
	touch $@

venv: $(STAMP_TEST)

# We test what we ship: a release abi3 wheel, installed into the venv.
wheel: $(STAMP_TEST)
	rm -rf target/wheels
	$(VENV)/bin/maturin build --profile $(PROFILE) --out target/wheels
	$(PY) -m pip install --quiet --force-reinstall --no-deps target/wheels/ferromine-*.whl

# Same profile as the wheel, so both share one build of the dependencies.
rust-test:
	cargo test -p ferromine-core --locked --profile $(PROFILE)

py-test: wheel
	# pytest exits 5 when it collects nothing: that is a failure here, not a pass.
	$(PY) -m pytest -q ; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$status

test: rust-test py-test

bench: $(STAMP_BENCH) wheel
	$(PY) benches/run.py $(BENCH_ARGS)

lint:
	cargo fmt --all --check
	cargo clippy --workspace --profile $(PROFILE) --all-targets -- -D warnings

clean:
	rm -rf target $(VENV)
