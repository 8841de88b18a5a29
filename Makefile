# One entry point for contributors and CI. `make run` and `make test` are the
# README's quick start; `make verify` is what to run before pushing.

CARGO ?= cargo
GUEST_TARGET := wasm32-wasip2
DATA_DIR ?= data/node1

# Where cargo builds (the host's build script exports guest paths under it).
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)

# (package and install-check: see below)
.PHONY: package install-check setup guests guests-polyglot test-polyglot run cluster test verify fmt clippy doc bench bench-vs-etcd bench-failover bench-watch bench-cas fuzz-smoke fuzz jepsen-soak power-loss simulate clean-data

## Install what the build needs: the guest target, protoc (raft-rs's
## protobuf build), iproute2 and nftables (partition and Jepsen tests). Safe
## to run repeatedly.
setup:
	@rustup target list --installed | grep -qx $(GUEST_TARGET) || rustup target add $(GUEST_TARGET)
	@./.ci/install-system-deps

## Build the guest components (the host's build script also does this).
guests: setup
	$(CARGO) build --manifest-path guests/Cargo.toml --target $(GUEST_TARGET) --release --target-dir target/guests

## The guests in Python and JavaScript (guests/kv-python, guests/kv-js, and
## their store-backed versions guests/kv-store-python, guests/kv-store-js,
## which import the kv guests' grammar modules). Their toolchains are pinned
## and project-local, one per language: componentize-py in a venv under
## target/, componentize-js in guests/kv-js/node_modules (npm ci from the
## committed lock file). Each component is rebuilt only when its sources,
## the WIT or the toolchain change.
POLYGLOT_DIR := $(TARGET_DIR)/guests/polyglot
PY_VENV := $(TARGET_DIR)/guest-toolchains/python
PY_TOOLCHAIN := $(PY_VENV)/.installed
JS_TOOLCHAIN := guests/kv-js/node_modules/.installed
KV_PYTHON_WASM := $(POLYGLOT_DIR)/kv_python.wasm
KV_JS_WASM := $(POLYGLOT_DIR)/kv_js.wasm
KV_STORE_PYTHON_WASM := $(POLYGLOT_DIR)/kv_store_python.wasm
KV_STORE_JS_WASM := $(POLYGLOT_DIR)/kv_store_js.wasm
# The kv guests' modules (grammar, Unicode tables), without their tests.
KV_PYTHON_MODULES := $(filter-out %/test_kv.py,$(wildcard guests/kv-python/*.py))
KV_JS_MODULES := $(wildcard guests/kv-js/src/*.js)
JS_BUILD := guests/kv-js/componentize.mjs
# The command examples the polyglot kv guests carry (their start banner).
KV_EXAMPLES := guests/kv-examples.txt
ATTACH_EXAMPLES := guests/tools/attach-examples

guests-polyglot: $(KV_PYTHON_WASM) $(KV_JS_WASM) $(KV_STORE_PYTHON_WASM) $(KV_STORE_JS_WASM)

$(PY_TOOLCHAIN): guests/kv-python/requirements.txt
	python3 -m venv $(PY_VENV)
	$(PY_VENV)/bin/pip install --quiet --disable-pip-version-check -r $<
	touch $@

$(KV_PYTHON_WASM): $(PY_TOOLCHAIN) wit/state-machine.wit $(KV_PYTHON_MODULES) $(KV_EXAMPLES) $(ATTACH_EXAMPLES)
	@mkdir -p $(@D)
	PYTHONDONTWRITEBYTECODE=1 $(PY_VENV)/bin/componentize-py -d wit -w guest componentize -p guests/kv-python app -o $@.tmp
	$(ATTACH_EXAMPLES) $@.tmp $(KV_EXAMPLES)
	mv $@.tmp $@

# kv.py comes from the kv guest's directory, the second path.
$(KV_STORE_PYTHON_WASM): $(PY_TOOLCHAIN) wit/v0.2.0/state-machine.wit $(KV_PYTHON_MODULES) $(filter-out %/test_kv_store.py,$(wildcard guests/kv-store-python/*.py)) $(KV_EXAMPLES) $(ATTACH_EXAMPLES)
	@mkdir -p $(@D)
	PYTHONDONTWRITEBYTECODE=1 $(PY_VENV)/bin/componentize-py -d wit/v0.2.0 -w store-guest componentize -p guests/kv-store-python -p guests/kv-python store_app -o $@.tmp
	$(ATTACH_EXAMPLES) $@.tmp $(KV_EXAMPLES)
	mv $@.tmp $@

$(JS_TOOLCHAIN): guests/kv-js/package.json guests/kv-js/package-lock.json
	cd guests/kv-js && npm ci --no-audit --no-fund
	touch $@

$(KV_JS_WASM): $(JS_TOOLCHAIN) $(JS_BUILD) wit/state-machine.wit guests/kv-js/build.mjs $(KV_JS_MODULES) $(KV_EXAMPLES) $(ATTACH_EXAMPLES)
	@mkdir -p $(@D)
	node guests/kv-js/build.mjs $(abspath $@)
	$(ATTACH_EXAMPLES) $@ $(KV_EXAMPLES)

$(KV_STORE_JS_WASM): $(JS_TOOLCHAIN) $(JS_BUILD) wit/v0.2.0/state-machine.wit guests/kv-store-js/build.mjs $(KV_JS_MODULES) $(wildcard guests/kv-store-js/src/*.js) $(KV_EXAMPLES) $(ATTACH_EXAMPLES)
	@mkdir -p $(@D)
	node guests/kv-store-js/build.mjs $(abspath $@)
	$(ATTACH_EXAMPLES) $@ $(KV_EXAMPLES)

## Their logic's unit tests, natively (no WebAssembly). The store-backed
## guests run over fakes of the host's store, with the kv guests' modules
## on the path as in their builds.
test-polyglot:
	cd guests/kv-python && PYTHONDONTWRITEBYTECODE=1 python3 -m unittest --quiet
	cd guests/kv-store-python && PYTHONPATH=../kv-python PYTHONDONTWRITEBYTECODE=1 python3 -m unittest --quiet
	cd guests/kv-js && node --test test/
	cd guests/kv-store-js && node --test test/

## Quick start 1: a single-node cluster with the built-in counter guest.
run: setup
	$(CARGO) run --release --bin raft-host -- --data-dir $(DATA_DIR)

## A local 3-node cluster (see examples/local_cluster.sh).
cluster: setup
	$(CARGO) build --release --bin raft-host
	./examples/local_cluster.sh

## Quick start 2: the whole test suite (this is what CI runs).
test: setup guests-polyglot test-polyglot
	./.ci/import-cycles
	$(CARGO) test --manifest-path guests/Cargo.toml --target-dir target/guests-native
	$(CARGO) test --workspace
	$(CARGO) run --example embedded_cluster

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
bench: setup guests-polyglot
	$(CARGO) bench --bench storage_fsync
	$(CARGO) bench --bench single_node
	$(CARGO) bench --bench cluster
	$(CARGO) bench --bench guests
	$(CARGO) bench --bench memory_state

## iroh-raft and etcd side by side on this machine (not part of `make
## test`: about 3 minutes). Installs etcd-server, etcd-client and wrk if
## missing (apt-get, as root), starts a 3-node cluster of each on loopback
## with data on the same disk, runs the same wrk workloads against both,
## prints ours/etcd ratios against the issue's targets and records them in
## BENCHMARKS.md. BENCH_SECONDS per run (default 10), BENCH_ONLY=name,...;
## the rest is in the script's header.
bench-vs-etcd: setup
	./.ci/bench-vs-etcd

## Leader failover of three raft-host processes: 20 SIGKILLs of the leader
## while clients write through a follower; prints kill -> first commit and
## kill -> in-flight writes committed (p50/p90/max) and checks that no
## acknowledged write was lost or doubled. About two minutes; not part of
## `make test`. BENCHMARKS.md, "Failover (issue 16)".
bench-failover: setup
	$(CARGO) bench --bench failover

## Watch fan-out: 0, 1, 100 and 1,000 watchers on a follower of a 3-node
## kv_store cluster taking writes; their cost on write throughput and
## whether they keep up (BENCHMARKS.md, "Watch fan-out").
bench-watch: setup
	$(CARGO) bench --bench watch_fanout

## Compare-and-swap under contention: read-modify-write loops with `cas`
## over 1 hot key and over 64 keys (BENCHMARKS.md).
bench-cas: setup
	$(CARGO) bench --bench cas_contention

## Every fuzz target (frames, raft messages, snapshot transfers and files,
## API bodies, entry payloads) on stable over 100k deterministic inputs
## each; about 10 seconds once built (own target dir: the first build
## takes ~15 minutes). host/fuzz/README.md.
fuzz-smoke: setup
	$(CARGO) test --manifest-path host/fuzz/Cargo.toml --target-dir target/fuzz

## Coverage-guided fuzzing with cargo-fuzz (`cargo install cargo-fuzz`),
## FUZZ_SECONDS per target, starting from the seed corpus. Stable works
## (libFuzzer without a sanitizer); the instrumented first build is slow.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := frame_decoder raft_payload snapshot_offer snapshot_file api_request entry_payload
fuzz: setup
	cd host/fuzz && $(CARGO) test --target-dir ../../target/fuzz -- --ignored write_seed_corpus
	cd host/fuzz && for target in $(FUZZ_TARGETS); do \
		$(CARGO) fuzz run $$target --sanitizer none --codegen-units 16 --target-dir ../../target/fuzz -- \
			-max_total_time=$(FUZZ_SECONDS) -malloc_limit_mb=16 -rss_limit_mb=2048 || exit 1; \
	done

## The Jepsen-style test (tests/netns/t92_jepsen.rs, a short run of which is in
## `make test`) as a soak: the same test, its nemesis running for
## JEPSEN_SECONDS (default an hour) against JEPSEN_NODES nodes (default 5).
## SEED=... replays a schedule; JEPSEN_KEEP=1 keeps the history and logs.
JEPSEN_SECONDS ?= 3600
JEPSEN_NODES ?= 5
jepsen-soak: setup
	JEPSEN_SECONDS=$(JEPSEN_SECONDS) JEPSEN_NODES=$(JEPSEN_NODES) $(CARGO) test --test netns t92_jepsen -- --nocapture

## The power-loss tests (tests/faults/t52_power_loss.rs, one node, and
## t53_power_loss_cluster.rs, three; a short form of each is in `make
## test`) with POWER_CUTS power cuts each (default 500): real nodes on the
## powercut FUSE filesystem (tests/powercut), SIGKILLed and cut, losing what
## was not fsynced. SEED=... replays a schedule; POWER_VERBOSE=1 prints
## what each cut lost. Root and /dev/fuse, like `make test`.
POWER_CUTS ?= 500
power-loss: setup
	POWER_CUTS=$(POWER_CUTS) $(CARGO) test --test faults power_cuts -- --nocapture --test-threads 1

## Many seeds of the deterministic simulation, optimized build:
## SIM_SEEDS (default 5000) from SIM_FIRST_SEED (default 1), SIM_THREADS
## at a time (default 2). A failing seed prints how to replay it.
SIM_SEEDS ?= 5000
SIM_FIRST_SEED ?= 1
SIM_THREADS ?= 2
simulate: setup
	SIM_SEEDS=$(SIM_SEEDS) SIM_FIRST_SEED=$(SIM_FIRST_SEED) SIM_THREADS=$(SIM_THREADS) $(CARGO) test --release --test simulation t15_seeded -- --nocapture

## The crates as they would be published: iroh-raft-client and iroh-raft
## as .crate files in target/package/, the host's with the default guest
## built into it (host/default-guest/, see host/build.rs), so it builds
## without the guest sources. `make install-check` builds and runs what
## this packs.
package: guests
	mkdir -p host/default-guest
	cp target/guests/$(GUEST_TARGET)/release/counter.wasm host/default-guest/counter.wasm
	$(CARGO) package -p iroh-raft-client -p iroh-raft --allow-dirty --no-verify

## `cargo install` from the packaged crate (release build, ~10 minutes),
## unpacked outside the repository (INSTALL_CHECK_DIR), then the installed
## raft-host runs a node with its built-in guest and takes writes. The
## client crate stands in for its crates.io release through a patch.
INSTALL_CHECK_DIR ?= /tmp/iroh-raft-install-check
install-check: package
	rm -rf $(INSTALL_CHECK_DIR) && mkdir -p $(INSTALL_CHECK_DIR)/src
	tar -xzf $(TARGET_DIR)/package/iroh-raft-0.1.0.crate -C $(INSTALL_CHECK_DIR)/src
	tar -xzf $(TARGET_DIR)/package/iroh-raft-client-0.1.0.crate -C $(INSTALL_CHECK_DIR)/src
	# A packaged file's mtime is fixed (2006), so cargo would reuse the last
	# build in the cached target dir: install what was just packed.
	find $(INSTALL_CHECK_DIR)/src -type f -exec touch {} +
	cd $(INSTALL_CHECK_DIR)/src/iroh-raft-0.1.0 && $(CARGO) install --path . --root $(INSTALL_CHECK_DIR) \
		--target-dir $(abspath $(TARGET_DIR))/install-check \
		--config 'patch.crates-io.iroh-raft-client.path="../iroh-raft-client-0.1.0"'
	./.ci/smoke-installed $(INSTALL_CHECK_DIR)/bin/raft-host

clean-data:
	rm -rf data
