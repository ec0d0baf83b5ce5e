# vodpipe — every entry point a person or CI needs. `make demo` and `make test` install
# what they need on a fresh Debian machine (ffmpeg, Chromium + player libraries for the
# playback check) and build incrementally in one target directory.

SHELL := /bin/bash
CARGO ?= cargo
VODPIPE := target/release/vodpipe
DEMO_OUT ?= demo-out
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps player-deps moto-deps lambda-deps infra-deps layer-deps image-deps build build-aws bins demo test e2e-aws chaos-aws load load-control probe-bench lambda infra-check sam-build worker-image doctor lint fmt bench bench-deps codec-bench ladder-bench tune-bench clean

all: build

## Install ffmpeg/ffprobe (Debian's package) if missing, and OpenSSL's command line (the
## signed-playback test checks signatures with it).
deps:
	@if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null || ! command -v openssl >/dev/null; then \
	  echo "installing ffmpeg and openssl…"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq ffmpeg openssl >/dev/null; \
	fi
	@ffmpeg -hide_banner -version | head -1

## Install Debian's Chromium and the pinned hls.js / shaka-player / playwright-core.
player-deps:
	@bash tests/player/install.sh

## moto server (a local AWS emulator) in .venv, for the AWS backend's tests.
MOTO_VERSION := 5.2.5
IMAGEIO_FFMPEG_VERSION := 0.8.1
moto-deps:
	@if ! .venv/bin/python -c "import moto, sys; sys.exit(moto.__version__ != '$(MOTO_VERSION)')" 2>/dev/null; then \
	  echo "installing moto $(MOTO_VERSION) into .venv…"; \
	  python3 -m venv .venv && .venv/bin/pip install -q "moto[server]==$(MOTO_VERSION)"; \
	fi
	@test -x .venv/bin/moto_server

## cargo-lambda (and the zig linker it cross-compiles with) from PyPI, and Rust's arm64
## standard library: what `make lambda` and `sam build` need.
CARGO_LAMBDA_VERSION := 1.9.2
ZIG_VERSION := 0.17.1
lambda-deps: moto-deps
	@if ! .venv/bin/cargo-lambda lambda --version 2>/dev/null | grep -q "$(CARGO_LAMBDA_VERSION)"; then \
	  echo "installing cargo-lambda $(CARGO_LAMBDA_VERSION) into .venv…"; \
	  .venv/bin/pip install -q "cargo-lambda==$(CARGO_LAMBDA_VERSION)" "ziglang==$(ZIG_VERSION)"; \
	fi
	@rustup target list --installed | grep -q aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu

## The SAM CLI (with cfn-lint) and checkov, each in a virtualenv of its own (their pinned
## dependencies disagree with moto's).
SAM_VERSION := 1.170.0
CHECKOV_VERSION := 3.3.30
infra-deps:
	@if ! .venv-sam/bin/sam --version 2>/dev/null | grep -q "$(SAM_VERSION)"; then \
	  echo "installing the SAM CLI $(SAM_VERSION) into .venv-sam…"; \
	  python3 -m venv .venv-sam && .venv-sam/bin/pip install -q "aws-sam-cli==$(SAM_VERSION)"; \
	fi
	@if ! .venv-checkov/bin/checkov --version 2>/dev/null | grep -q "$(CHECKOV_VERSION)"; then \
	  echo "installing checkov $(CHECKOV_VERSION) into .venv-checkov…"; \
	  python3 -m venv .venv-checkov && .venv-checkov/bin/pip install -q "checkov==$(CHECKOV_VERSION)"; \
	fi

## The template: `sam validate --lint` (cfn-lint) and checkov; skips are in the template,
## each with its reason.
infra-check: infra-deps
	SAM_CLI_TELEMETRY=0 .venv-sam/bin/sam validate --lint --region us-east-1
	.venv-checkov/bin/checkov -f infra/template.yaml --framework cloudformation --quiet --compact --skip-download

## What the ffprobe layer's build needs (infra/ffprobe-layer/build.sh): apt's source
## tools and Debian's archive key (the source package is fetched and verified by apt),
## and QEMU to run the arm64 result in the tests.
layer-deps:
	@missing=""; for p in dpkg-dev debian-archive-keyring python3-venv qemu-user-static; do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing$$missing…"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi

## What the worker image's build needs: mmdebstrap (the root file system), buildah (the
## OCI image, no daemon), QEMU and arch-test (an arm64 root file system on another machine).
image-deps:
	@missing=""; for p in buildah mmdebstrap qemu-user-static arch-test zstd; do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing$$missing…"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi

## `sam build` from the repository root (samconfig.toml): the three functions for arm64
## (cargo-lambda) and the ffprobe layer (a static arm64 build of Debian's FFmpeg source,
## cached under ~/.cache/vodpipe) into .aws-sam/build.
sam-build: lambda-deps infra-deps layer-deps
	PATH="$(CURDIR)/.venv/bin:$$PATH" ZIG_PYTHON="$(CURDIR)/.venv/bin/python" SAM_CLI_TELEMETRY=0 \
	  .venv-sam/bin/sam build
	@du -sh .aws-sam/build/*Function/bootstrap .aws-sam/build/ProbeLayer/bin/ffprobe

## The worker image for arm64, built without Docker (scripts/worker-image.sh), pushed to
## the stack's ECR repository (the WorkerRepositoryUri output of STACK, or WORKER_REPO) as
## the commit's tag and `latest`. Needs root (or user namespaces) and the AWS CLI.
STACK ?= vodpipe
worker-image: lambda-deps image-deps
	@repo="$(WORKER_REPO)"; \
	if [ -z "$$repo" ]; then \
	  repo=$$(aws cloudformation describe-stacks --stack-name "$(STACK)" \
	    --query "Stacks[0].Outputs[?OutputKey=='WorkerRepositoryUri'].OutputValue" --output text) || { \
	    echo "deploy the stack first (sam deploy), or set WORKER_REPO=<account>.dkr.ecr.<region>.amazonaws.com/<name>-worker"; exit 2; }; \
	fi; \
	bash scripts/worker-image.sh --arch arm64 --push "$$repo"

## Read-only preflight of an account and a deployed stack (quotas, roles, image, network,
## functions); every line says what to do about it.
doctor: build-aws
	$(VODPIPE) aws doctor --stack "$(STACK)"

## The embedded `vodpipe` (run, plan, ingest, worker, status, jobs, watch, serve,
## simulate on files and SQLite): no AWS SDK crate is compiled. `--backend aws` and
## `vodpipe aws …` in this binary say to use `make build-aws`.
build:
	$(CARGO) build --release -p vodpipe-cli --no-default-features

## The full `vodpipe`, AWS backend and `vodpipe aws …` included (the default features, as
## `cargo install --path crates/cli` builds it), in the same place as `make build`'s.
build-aws:
	$(CARGO) build --release -p vodpipe-cli

## Every binary of the workspace (debug): the CLI, the functions, the worker task and the
## emulator host the end-to-end runs use.
bins:
	$(CARGO) build --workspace --bins

## The Lambda functions' one binary for arm64 (Graviton), as `sam build` packages it for
## each of the three (its Handler picks the function); prints its size.
lambda: lambda-deps
	PATH="$(CURDIR)/.venv/bin:$$PATH" $(CARGO) lambda build --release --arm64 -p vodpipe-functions
	@printf '%-16s %s\n' vodpipe-lambda "$$(du -h target/lambda/vodpipe-lambda/bootstrap | cut -f1)"

## The deployed pipeline on the emulator: INPUT uploaded under KEY, the asset downloaded
## into OUT, the job's status JSON printed. Every function and task runs with exactly its
## template role (IAM enforced). E2E_FLAGS adds e.g. --interrupt, or AWS's failures:
## --fault lost=0.05,throttle=0.05,conflict=0.05.
e2e-aws: deps moto-deps bins
	@test -n "$(INPUT)" -a -n "$(KEY)" -a -n "$(OUT)" || { \
	  echo 'usage: make e2e-aws INPUT=<video> KEY=<object key> OUT=<dir> [E2E_FLAGS="--interrupt --duplicate-events --fault lost=0.05,throttle=0.05"]'; exit 2; }
	target/debug/vodpipe-emulator e2e --input "$(INPUT)" --key "$(KEY)" --out "$(OUT)" $(E2E_FLAGS)

## The deployed shape on a perfect AWS and on AWS as it fails (5 % of responses lost after
## the write, 5 % throttled, 5 % of transactions conflicted; IAM enforced, a Spot reclaim,
## an older upload held back), the same uploads both times; prints both side by side.
## FAULTS="rule ..." replaces the fault rules.
CHAOS_OUT ?= chaos-out
chaos-aws: deps moto-deps bins
	bash scripts/chaos-aws.sh target/debug "$(CHAOS_OUT)" $(FAULTS)

## A burst through the deployed shape on the emulator: 1,000 uploads of a real clip within
## a minute, S3 events on the upload queue, the real ingest and stitch functions behind
## their mappings, 8 worker processes (killed and restarted), 5 % of the functions' and
## workers' AWS responses lost and 5 % throttled. Prints the drain time, the largest
## backlog per queue, the stitch rate, AWS calls per item, and 0 lost / 0 published twice.
## LOAD_FLAGS="--jobs 100" and the like change it; `make load-control` is the control
## plane alone (planned jobs, no functions), 500 jobs × 20 items.
LOAD_FLAGS ?= --jobs 1000 --items 2 --burst-seconds 60 --fault lost=0.05,throttle=0.05
load: deps moto-deps
	$(CARGO) build --release -p vodpipe-emulator -p vodpipe-functions
	target/release/vodpipe-emulator load --deployed $(LOAD_FLAGS)

load-control: deps moto-deps
	$(CARGO) build --release -p vodpipe-emulator
	target/release/vodpipe-emulator load $(LOAD_CONTROL_FLAGS)

## What probing a 2-hour 1080p MP4 reads, against ffprobe's packet scan.
probe-bench: deps build
	@bash scripts/probe-bench.sh "$(VODPIPE)"

## A real clip through the whole pipeline; prints where the output is and how to play it.
demo: deps build
	@bash scripts/demo.sh "$(VODPIPE)" "$(DEMO_OUT)"

## Every test: unit, contract (embedded and AWS on moto), end to end with real ffmpeg,
## playback in hls.js and shaka, the deployed functions and worker tasks on the emulator
## (the same run as `make e2e-aws`, on a small clip, with its checks), the `sam build`
## artefacts (the layer's arm64 ffprobe under QEMU) and the worker image (built without
## Docker, with the worker run inside it). `cargo test --workspace` builds every binary the
## end-to-end tests start (the CLI, the emulator host, the functions, the worker task) before
## the first test runs.
test: deps player-deps moto-deps image-deps sam-build
	$(CARGO) test --workspace --no-fail-fast

## Formatting, and clippy on the whole workspace and on the embedded CLI alone (the
## `aws` feature off), so code on either side of the feature stays warning-free.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p vodpipe-cli --no-default-features --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## vodpipe run vs one plain ffmpeg producing the same ladder; prints the median ratio.
bench: deps build
	@bash scripts/bench.sh "$(VODPIPE)"

## What the quality benchmarks need beyond make deps: an ffmpeg with libvmaf (PyPI's
## imageio-ffmpeg, in .venv-bench; Debian's ffmpeg has no libvmaf). Their real footage is
## fetched from Debian and PyPI by scripts/footage.sh, once, into ~/.cache/vodpipe/footage.
bench-deps:
	@if ! .venv-bench/bin/python -c "import imageio_ffmpeg, sys; sys.exit(imageio_ffmpeg.__version__ != '$(IMAGEIO_FFMPEG_VERSION)')" 2>/dev/null; then \
	  echo "installing imageio-ffmpeg $(IMAGEIO_FFMPEG_VERSION) (an ffmpeg with libvmaf) into .venv-bench…"; \
	  python3 -m venv .venv-bench && .venv-bench/bin/pip install -q "imageio-ffmpeg==$(IMAGEIO_FFMPEG_VERSION)"; \
	fi

## What each codec costs (CPU s per output minute) and saves (bytes, at what VMAF and PSNR).
codec-bench: deps bench-deps build
	@bash scripts/codec-bench.sh "$(VODPIPE)"

## What a per-title ladder (--ladder auto) saves against the fixed one, rung by rung, on real
## footage and the synthetic clip (quality at the source's size: VMAF, PSNR and SSIM).
ladder-bench: deps bench-deps build
	@bash scripts/ladder-bench.sh "$(VODPIPE)"

## What x264's tunings buy on real footage at the fixed rung's VMAF, and the banding (CAMBI)
## they cost: `CLIPS="animation live-action" TUNES="animation film psnr"`.
tune-bench: deps bench-deps
	@bash scripts/tune-bench.sh

clean:
	rm -rf $(DEMO_OUT) $(CHAOS_OUT) bench-out .aws-sam target/buildah
