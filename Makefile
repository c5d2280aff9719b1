# govmm: the two entry points for a fresh machine are `make demo` and `make test`.
SHELL := /bin/bash
export PATH := $(PATH):/usr/local/go/bin
GO ?= go

.PHONY: demo test unit fuzz fuzz-smoke e2e build images testhost bench profile experiment afxdp-zerocopy stability clean lint

## demo: install deps, build images and govmm, boot a guest (natively or in the nested test host) and show its console
demo:
	scripts/install-deps
	$(GO) run ./cmd/govmm-demo

## test: install deps, lint, unit tests with -race, every fuzz target briefly (20000 inputs each), then the end-to-end tests (native or nested)
test: lint unit fuzz-smoke e2e

lint:
	scripts/install-deps
	@fmt=$$(gofmt -l . | grep -v '^.cache/' || true); if [ -n "$$fmt" ]; then echo "gofmt needed: $$fmt"; exit 1; fi
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v "/tests$$")

fuzz-smoke:
	scripts/fuzz-smoke

## fuzz: the nightly-style run: every fuzz target for FUZZTIME inputs (default a million each), with the counts
fuzz:
	FUZZTIME='$(or $(FUZZTIME),1000000x)' scripts/fuzz-smoke

e2e:
	$(GO) test -count=1 -timeout 80m -v ./tests/ # one package: its progress streams live

## bench: device benchmarks (go test -bench), then the end-to-end table vs QEMU in one test-host boot (.cache/bench.json)
bench:
	scripts/install-deps
	$(GO) test -run '^$$' -bench . -benchmem ./devices/... ./zerocopy/
	GOVMM_BENCH=1 $(GO) test -count=1 -timeout 60m -run TestBenchmarkTable -v ./tests/

## profile: govmm --cpuprofile under iperf3 load, zero-copy and copy paths (.cache/profile-*.pprof)
profile:
	scripts/install-deps
	GOVMM_PROFILE=1 $(GO) test -count=1 -timeout 30m -run TestProfile -v ./tests/

## afxdp-zerocopy: AF_XDP in zero-copy mode on the test host's own NICs (Linux 6.18 test host, two
## virtio-net NICs on one hub of the outer QEMU); blocked in the TCG nested host (README, Known problems)
afxdp-zerocopy:
	scripts/install-deps
	GOVMM_AFXDP_ZEROCOPY=1 $(GO) test -count=1 -timeout 30m -run 'TestAFXDPZeroCopy$$' -v ./tests/

## experiment: A/B govmm options against QEMU vhost=off in one test-host boot, e.g.
## make experiment EXPERIMENT='poll0=--net-opts tx-poll=0;pin=--cpu-pin auto' ROUNDS=3
## TRACE=1: trace 2 s of each run in the test host and say what caused each external-interrupt exit
experiment:
	scripts/install-deps
	GOVMM_EXPERIMENT='$(EXPERIMENT)' GOVMM_EXPERIMENT_ROUNDS='$(or $(ROUNDS),1)' GOVMM_EXPERIMENT_TRACE='$(TRACE)' $(GO) test -count=1 -timeout 60m -run TestExperiment -v ./tests/

## stability: boot the nested test host BOOTS times (default 20) with a short govmm and QEMU network run each,
## no retries, and print the failure rates; QEMU=PATH picks the test host's own QEMU (QEMU=system: 7.2),
## L1KERNEL=linux-image-VER its kernel (e.g. 6.12 from bookworm-backports), CPUS=2 two-vCPU guests (+ the 82599 with RSS)
stability:
	scripts/install-deps
	GOVMM_STABILITY='$(or $(BOOTS),20)' GOVMM_STABILITY_CPUS='$(CPUS)' GOVMM_TESTHOST_QEMU='$(QEMU)' GOVMM_TESTHOST_KERNEL='$(L1KERNEL)' $(GO) test -count=1 -timeout 300m -run TestHostStability -v ./tests/

build:
	CGO_ENABLED=0 $(GO) build -o bin/govmm ./cmd/govmm

images:
	guest-images/build

testhost:
	guest-images/build-testhost

clean:
	rm -rf bin
