# One entry point for contributors and CI. `make run` and `make test` are the
# README's quick start; `make verify` is what to run before pushing.

CARGO ?= cargo
GUEST_TARGET := wasm32-wasip2
DATA_DIR ?= data/node1

.PHONY: setup guests run cluster test verify fmt clippy doc bench fuzz-smoke clean-data

## Install what the build needs: the guest target, protoc (raft-rs's
## protobuf build) and iproute2 (partition tests). Safe to run repeatedly.
setup:
	@rustup target list --installed | grep -qx $(GUEST_TARGET) || rustup target add $(GUEST_TARGET)
	@./.ci/install-system-deps

## Build the guest components (the host's build script also does this).
guests: setup
	$(CARGO) build --manifest-path guests/Cargo.toml --target $(GUEST_TARGET) --release --target-dir target/guests

## Quick start 1: a single-node cluster with the built-in counter guest.
run: setup
	$(CARGO) run --release --bin raft-host -- --data-dir $(DATA_DIR)

## A local 3-node cluster (see examples/local_cluster.sh).
cluster: setup
	$(CARGO) build --release --bin raft-host
	./examples/local_cluster.sh

## Quick start 2: the whole test suite (this is what CI runs).
test: setup
	$(CARGO) test --manifest-path guests/Cargo.toml --target-dir target/guests-native
	$(CARGO) test --workspace

fmt:
	$(CARGO) fmt --all --check
	$(CARGO) fmt --manifest-path guests/Cargo.toml --all --check

clippy: setup
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --manifest-path guests/Cargo.toml --target $(GUEST_TARGET) --release --target-dir target/guests -- -D warnings

doc: setup
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps

## Everything a contributor runs before pushing.
verify: fmt clippy doc test

## Benchmarks (see BENCHMARKS.md).
bench: setup
	$(CARGO) bench --bench storage_fsync
	$(CARGO) bench --bench single_node
	$(CARGO) bench --bench cluster

## The fuzz targets on stable over 100k deterministic inputs each (own
## target dir: the first build takes a while). Coverage-guided runs:
## host/fuzz/README.md.
fuzz-smoke: setup
	$(CARGO) test --manifest-path host/fuzz/Cargo.toml --target-dir target/fuzz

clean-data:
	rm -rf data
