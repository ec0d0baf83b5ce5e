# vodpipe — every entry point a person or CI needs. `make demo` and `make test` install
# what they need on a fresh Debian machine (ffmpeg, Chromium + player libraries for the
# playback check) and build incrementally in one target directory.

SHELL := /bin/bash
CARGO ?= cargo
VODPIPE := target/release/vodpipe
DEMO_OUT ?= demo-out
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps player-deps moto-deps build demo test lint fmt bench clean

all: build

## Install ffmpeg/ffprobe (Debian's package) if missing.
deps:
	@if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then \
	  echo "installing ffmpeg…"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq ffmpeg >/dev/null; \
	fi
	@ffmpeg -hide_banner -version | head -1

## Install Debian's Chromium and the pinned hls.js / shaka-player / playwright-core.
player-deps:
	@bash tests/player/install.sh

## moto server (a local AWS emulator) in .venv, for the AWS backend's tests.
MOTO_VERSION := 5.2.5
moto-deps:
	@if ! .venv/bin/python -c "import moto, sys; sys.exit(moto.__version__ != '$(MOTO_VERSION)')" 2>/dev/null; then \
	  echo "installing moto $(MOTO_VERSION) into .venv…"; \
	  python3 -m venv .venv && .venv/bin/pip install -q "moto[server]==$(MOTO_VERSION)"; \
	fi
	@test -x .venv/bin/moto_server

build:
	$(CARGO) build --release -p vodpipe-cli

## A real clip through the whole pipeline; prints where the output is and how to play it.
demo: deps build
	@bash scripts/demo.sh "$(VODPIPE)" "$(DEMO_OUT)"

## Every test: unit, contract (embedded and AWS on moto), end to end with real ffmpeg,
## playback in hls.js and shaka.
test: deps player-deps moto-deps
	$(CARGO) test --workspace --no-fail-fast

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## vodpipe run vs one plain ffmpeg producing the same ladder; prints the median ratio.
bench: deps build
	@bash scripts/bench.sh "$(VODPIPE)"

clean:
	rm -rf $(DEMO_OUT) bench-out
