# kiln — `make help` lists the targets.
SHELL := /bin/bash
CARGO ?= cargo
KILN_DEBUG := target/debug/kiln
PIPELINE ?= pipelines/web-text.yaml

# gzip is decoded by ISA-L (crates/inflate), built from source with nasm and autotools:
# scripts/build-deps.sh installs them when missing (as root, or with sudo -n). Where it
# cannot, kiln is built and tested without ISA-L (gzip through flate2), and says so.
# Evaluated on first use and then kept: only targets that build run the script, once.
ISAL_OK = $(eval ISAL_OK := $$(shell scripts/build-deps.sh >&2 && echo yes))$(ISAL_OK)
NO_ISAL = $(if $(ISAL_OK),,--no-default-features)
NO_ISAL_WS = $(if $(ISAL_OK),,--no-default-features --exclude kiln-inflate)

.PHONY: help deps build run test interop s3-shell lint fmt examples dist wheel bench fuzz clean

help: ## list the targets
	@grep -E '^[a-z][a-zA-Z_-]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

deps: ## install the build tools ISA-L needs (nasm, autotools) if missing (the build targets do it too)
	@scripts/build-deps.sh

build: ## build kiln (the one dev profile every test uses)
	$(CARGO) build --locked $(NO_ISAL)

run: build ## run the main sample pipeline on sample-data/ (no network, no services)
	$(KILN_DEBUG) run $(PIPELINE) --overwrite
	@echo; $(KILN_DEBUG) inspect out/$(basename $(notdir $(PIPELINE)))/

test: ## run every test (unit, end-to-end, snapshots; S3 and Azure against local moto and Azurite; a Slurm job array when root; datatrove as the text.quality reference)
	@# The Python packages and Azurite install while cargo compiles the tests; then
	@# maturin packs the binary just built into the wheel tests/wheel.rs installs (no
	@# compiling: the same profile and features), before any test runs.
	@scripts/with-stores.sh --install > .test-install.log 2>&1 & inst=$$!; \
	if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --locked $(NO_ISAL_WS) --no-run; built=$$?; \
	else \
		$(CARGO) test --workspace --locked $(NO_ISAL_WS) --no-run; built=$$?; \
	fi; \
	wait $$inst || { cat .test-install.log; exit 1; }; cat .test-install.log; \
	[ $$built -eq 0 ] || exit $$built; \
	rm -rf target/wheels-test; \
	$${KILN_TEST_VENV:-.venv-test}/bin/maturin build --profile dev --locked $(NO_ISAL) --out target/wheels-test -q || exit 1; \
	if $(CARGO) nextest --version >/dev/null 2>&1; then \
		scripts/with-stores.sh $(CARGO) nextest run --workspace --locked $(NO_ISAL_WS) --no-fail-fast; \
	else \
		scripts/with-stores.sh $(CARGO) test --workspace --locked $(NO_ISAL_WS) --no-fail-fast; \
	fi

interop: ## only the interop suite: pyarrow, DuckDB, Polars and HF datasets read kiln's shards, megatron-core, MosaicML Streaming and webdataset its training formats, from disk and the local S3 server (make test runs it too)
	$(CARGO) build --locked $(NO_ISAL) --tests
	scripts/with-stores.sh $(CARGO) nextest run --locked $(NO_ISAL) -E 'test(interop::) | test(megatron::) | test(mds::) | test(webdataset::)'

s3-shell: ## a shell with the local S3 (and Azure) servers running (KILN_TEST_S3_ENDPOINT set)
	scripts/with-stores.sh $(SHELL)

lint: ## rustfmt check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --locked $(NO_ISAL_WS) --all-targets -- -D warnings

fmt: ## format the code
	$(CARGO) fmt --all

examples: build ## validate and run every pipeline under pipelines/
	@for p in pipelines/*.yaml; do echo "== $$p"; $(KILN_DEBUG) run $$p --overwrite -q && echo ok || exit 1; done

dist: deps ## the binary to ship: release with fat LTO and one codegen unit (target/dist/kiln; ~45 min from scratch on 2 cores)
	$(CARGO) build --locked --profile dist

wheel: deps ## the Python wheel: the kiln binary (release) and python/kiln, built by maturin into target/wheels (pip install target/wheels/kiln-*.whl)
	@[ -x .venv-wheel/bin/maturin ] || { python3 -m venv .venv-wheel && .venv-wheel/bin/pip install --quiet --disable-pip-version-check "$$(grep -E '^maturin==' tests/requirements.txt)"; }
	.venv-wheel/bin/maturin build --release --locked $(NO_ISAL) --out target/wheels

bench: dist ## compare kiln (the dist binary) with the peers in ../shared/bench on the generated corpus (minutes; ~3 GB in /tmp)
	bash benches/run.sh

FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= pipeline_file expression decode_jsonl decode_csv decode_text decode_warc decode_parquet decode_gzip_jsonl decode_zstd_csv
fuzz: deps ## run each fuzz target for FUZZ_SECONDS (default 60; nightly + cargo-fuzz, installed if missing; not in CI)
	@rustup toolchain list | grep -q nightly || rustup toolchain install nightly --profile minimal
	@cargo fuzz --version >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	@mkdir -p fuzz/corpus
	@# Seed the input formats' corpora with the sample data.
	@for t in $(FUZZ_TARGETS); do mkdir -p fuzz/corpus/$$t; done
	@find sample-data -name '*.jsonl' -size -64k -exec cp {} fuzz/corpus/decode_jsonl/ \;
	@find sample-data -name '*.csv' -size -64k -exec cp {} fuzz/corpus/decode_csv/ \;
	@find sample-data -name '*.txt' -size -64k -exec cp {} fuzz/corpus/decode_text/ \;
	@find sample-data -name '*.parquet' -size -256k -exec cp {} fuzz/corpus/decode_parquet/ \;
	@mkdir -p fuzz/corpus/pipeline_file && cp pipelines/*.yaml fuzz/corpus/pipeline_file/
	cd fuzz && for t in $(FUZZ_TARGETS); do \
		echo "== $$t ($(FUZZ_SECONDS)s)"; \
		cargo +nightly fuzz run -O $$t corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 -timeout=20 \
			|| { echo "$$t found a crash: fuzz/artifacts/$$t/ (make it a test in tests/fuzz_regressions.rs)"; exit 1; }; \
	done

clean: ## remove build output and sample outputs
	$(CARGO) clean
	rm -rf out bench-out .venv-test .venv-train .azurite
