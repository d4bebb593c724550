# georep — see README.md. Every target works on a machine with only Go;
# `proto` and `lint` install buf and the protoc plugins with `go install`.
GO        ?= go
GOBIN     ?= $(shell $(GO) env GOPATH)/bin
BUF_VERSION            ?= v1.57.2
PROTOC_GEN_GO_VERSION  ?= v1.36.10
PROTOC_GEN_GRPC_VERSION ?= v1.5.1
# staticcheck: dead code (U1000), misuse of the standard library, simpler
# forms. Its default checks, pinned: a newer one may find more.
STATICCHECK_VERSION    ?= v0.8.2
BUF       := $(GOBIN)/buf
# Test flags: -race always; TESTFLAGS adds more (e.g. -run, -v).
TESTFLAGS ?=
FUZZTIME  ?= 10s

.PHONY: all build test test-short test-churn test-churn-small test-faults harness soak fuzz demo proto proto-check lint tools clean bench check-dist

all: build

build:
	$(GO) build -buildvcs=auto -o bin/georep ./cmd/georep

# The whole suite, as CI runs it.
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m $(TESTFLAGS) ./...

test-short:
	$(GO) test -short -count=1 ./...

# Live replication under random churn, compared entry by entry: for CI,
# 3,000 ops and churn during a smaller initial crawl (make test leaves
# them out to stay quick); the full size, 20,000 ops and churn during the
# initial crawl of 4,000 files, opt-in (about a minute; see
# docs/ARCHITECTURE.md for how often it converges). All under -race, which
# slows the recorder several times and so widens every race with the tree.
test-churn-small:
	GEOREP_CHURN=1 GEOREP_CHURN_OPS=3000 GEOREP_CHURN_SEED=801 $(GO) test -race -short -run 'TestLiveConvergence|TestLiveChurnDuringInitialCrawl' -count=1 -timeout 10m ./master

test-churn:
	GEOREP_CHURN=1 GEOREP_CHURN_OPS=20000 $(GO) test -race -run 'TestLiveConvergence|TestLiveChurnDuringInitialCrawl' -count=1 -timeout 20m ./master

# Fault tests with real processes (scripts/faults): the master killed 10
# times during churn, the slave killed during a large stream, the link cut
# mid-batch by a proxy, the slave's filesystem full (a tmpfs: needs root).
# Trees compared after each; the bytes sent again are logged (-v).
test-faults:
	GEOREP_FAULTS=1 $(GO) test -count=1 -timeout 15m -v -run 'Test' ./scripts/faults

# The live path's deterministic harness (master/harness_test.go): seeded
# scripts of changes interleaved with the master's steps (recorder polls
# and cuts, batches, changes in the middle of batches, kills), through the
# real recorder, journal, batch engine and slave, trees compared after
# each. make test runs 150 seeds; CI 2,000; this target HARNESS_SEEDS
# (default 10,000) of HARNESS_STEPS (100) from HARNESS_SEED (1). A failing
# seed prints its script; GEOREP_HARNESS_SHRINK=1 cuts it down.
HARNESS_SEEDS ?= 10000
HARNESS_STEPS ?= 100
HARNESS_SEED  ?= 1
harness:
	GEOREP_HARNESS_SEEDS=$(HARNESS_SEEDS) GEOREP_HARNESS_STEPS=$(HARNESS_STEPS) GEOREP_HARNESS_SEED=$(HARNESS_SEED) \
		$(GO) test -count=1 -timeout 0 -run 'TestLiveHarness$$' ./master

# Soak test (scripts/soak; its README.md says how to read the output): a
# real slave and a live master on loopback, the master tree churned by the
# soak's own generator, then the trees compared entry by entry; a seed
# passes when they are equal within 10 s of the churn end and the master
# never claimed synced while they differed. Defaults: 5,000 initial files,
# 30 min of churn per seed at 300 ops/s, seeds 1,2,3 one after the other
# (over an hour and a half in all). Needs root for the loop-mounted ext4
# each seed runs on and for chown (as another user: temp dirs, no chown).
# SOAK_FLAGS adds flags: SOAK_FLAGS=-quick (2,000 files, 60 s, seed 1),
# SOAK_FLAGS='-duration 5m -seeds 1 -kill-master-every 1m', ...
SOAK_FLAGS ?=
soak:
	$(GO) run ./scripts/soak $(SOAK_FLAGS)

# Run each fuzz target for FUZZTIME, a duration (10s) or a count of
# executions (2000x). CI uses a count: a duration races the fuzzer's own
# deadline on go1.26 and fails with "context deadline exceeded" having found
# nothing (golang/go#75804). The seed corpora also run in `make test`.
fuzz:
	$(GO) test -run=NONE -fuzz=FuzzParse -fuzztime=$(FUZZTIME) ./changelog/
	$(GO) test -run=NONE -fuzz=FuzzEscape -fuzztime=$(FUZZTIME) ./changelog/
	$(GO) test -run=NONE -fuzz=FuzzIndexLine -fuzztime=$(FUZZTIME) ./changelog/
	$(GO) test -run=NONE -fuzz=FuzzFanEvents -fuzztime=$(FUZZTIME) ./master/recorder/
	$(GO) test -run=NONE -fuzz=FuzzEntryOp -fuzztime=$(FUZZTIME) ./slave/
	$(GO) test -run=NONE -fuzz=FuzzMetaOp -fuzztime=$(FUZZTIME) ./slave/
	$(GO) test -run=NONE -fuzz=FuzzDataHeader -fuzztime=$(FUZZTIME) ./slave/
	$(GO) test -run=NONE -fuzz=FuzzInlineFiles -fuzztime=$(FUZZTIME) ./slave/
	$(GO) test -run=NONE -fuzz=FuzzBulkChunk -fuzztime=$(FUZZTIME) ./slave/
	$(GO) test -run=NONE -fuzz=FuzzHello -fuzztime=$(FUZZTIME) ./internal/bulkconn/
	$(GO) test -run=NONE -fuzz=FuzzParse -fuzztime=$(FUZZTIME) ./internal/gfid/
	$(GO) test -run=NONE -fuzz=FuzzValidName -fuzztime=$(FUZZTIME) ./internal/tlsconf/
	$(GO) test -run=NONE -fuzz=FuzzCheckRel -fuzztime=$(FUZZTIME) ./internal/beneath/
	$(GO) test -run=NONE -fuzz=FuzzRoundTrip -fuzztime=$(FUZZTIME) ./syncer/delta/
	$(GO) test -run=NONE -fuzz=FuzzUnmarshalSignature -fuzztime=$(FUZZTIME) ./syncer/delta/
	$(GO) test -run=NONE -fuzz=FuzzParseRequest -fuzztime=$(FUZZTIME) ./internal/syncstatus/
	$(GO) test -run=NONE -fuzz=FuzzRules -fuzztime=$(FUZZTIME) ./internal/rules/
	$(GO) test -run=NONE -fuzz=FuzzLoad -fuzztime=$(FUZZTIME) ./internal/config/
	$(GO) test -run=NONE -fuzz=FuzzParse -fuzztime=$(FUZZTIME) ./internal/bwsched/
	$(GO) test -run=NONE -fuzz=FuzzDigestEntry -fuzztime=$(FUZZTIME) ./master/

# georep vs rsync on the same workloads (BENCH_SCALE, RUNS, BENCH_OUT: see scripts/bench/main.go).
bench: build
	command -v rsync >/dev/null || { apt-get update && apt-get install -y rsync; }
	$(GO) run ./scripts/bench

# A slave and a master on temp dirs, a sample tree, one-shot syncs, a live
# master completing a checkpoint, and the status table.
demo:
	$(GO) run ./cmd/georep demo

# What dist/ ships, checked with the tools that read it: the systemd units
# (systemd-analyze verify), the alerting rules (promtool check rules and
# test rules) and the completion scripts (bash/zsh/fish -n). Installs
# missing tools with apt-get; skips one apt has no package for.
check-dist:
	bash scripts/check-dist.sh

tools:
	GOFLAGS=-mod=mod $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
	GOFLAGS=-mod=mod $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOFLAGS=-mod=mod $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GRPC_VERSION)
	GOFLAGS=-mod=mod $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

proto: tools
	PATH="$(GOBIN):$$PATH" $(BUF) lint
	PATH="$(GOBIN):$$PATH" $(BUF) generate

# Fails when the committed generated code is not what `make proto` makes.
proto-check: proto
	git diff --exit-code -- proto/

lint: tools
	PATH="$(GOBIN):$$PATH" $(BUF) lint
	test -z "$$(gofmt -l .)" || { gofmt -l .; exit 1; }
	$(GO) vet ./...
	$(GOBIN)/staticcheck ./...

clean:
	rm -rf bin
