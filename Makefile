# Two commands on a fresh Debian machine: `make demo` and `make test`.
# Both install the missing system packages first (scripts/setup.sh says what it installs).

CARGO ?= cargo
OUT ?= out/demo

.PHONY: setup demo test bench build clean

setup:
	@bash scripts/setup.sh

build: setup
	$(CARGO) build --release -p smp-cli

## A complete simulated session on embedded defaults; writes $(OUT)/.
demo: build
	./target/release/smp demo --out $(OUT)

## The whole test suite: unit, property and cross-crate end-to-end tests.
test: setup
	$(CARGO) test --workspace --no-fail-fast

## Criterion benchmarks of each crate (speed figures are measured here, not in tests).
bench: setup
	$(CARGO) bench --workspace

clean:
	$(CARGO) clean
	rm -rf out
