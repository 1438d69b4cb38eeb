# roam: see README.md. `make demo` shows roam at work; `make test` runs every test.
GO       ?= go
PKGS     := ./...
FUZZTIME ?= 20s
BENCHTIME ?= 2s

.PHONY: all build deps test vet race bench fuzz demo clean

all: build

deps:
	@scripts/deps.sh

build:
	$(GO) build -o bin/ ./cmd/...

vet:
	$(GO) vet $(PKGS)
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { echo "gofmt needed:"; gofmt -l .; exit 1; }

# Every test, with the race detector; privileged tests (TestPrivileged...)
# run when this runs as root and skip, saying why, otherwise.
test: deps vet
	$(GO) test -race -count=1 -timeout 40m $(PKGS)
	$(GO) test -count=1 -run 'NoAllocs' $(PKGS)

bench:
	$(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) ./internal/packet ./nat ./switch ./bench

# Each fuzz target for a bounded time (FUZZTIME).
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

# The soak test for longer than make test runs it (SOAK, default 10m):
# traffic, a reassign every 100 ms and control operations, with the race
# detector.
.PHONY: soak
soak:
	$(GO) test -race -count=1 -timeout 0 -run '^TestSoak$$' -v ./control -soak $(or $(SOAK),10m)

demo: deps build
	@scripts/demo.sh

clean:
	rm -rf bin

# Side-by-side end-to-end benchmark, as root: roam, the Linux kernel (nftables
# NAT) and Open vSwitch (userspace datapath) on the same namespaces; medians
# of RUNS runs (default 3) to bench/results. See bench/e2e/README.md. The
# picture is drawn by bin/roame2e-plot, a module of its own (bench/e2e/plot)
# so that gonum stays out of roam's go.mod.
.PHONY: bench-e2e
bench-e2e:
	@bench/e2e/deps.sh
	$(GO) build -o bin/ ./cmd/roamd ./cmd/roamctl ./bench/e2e/cmd/roame2e
	cd bench/e2e/plot && $(GO) build -o ../../../bin/roame2e-plot .
	bin/roame2e run --runs $(or $(RUNS),3) --roamd bin/roamd --roamctl bin/roamctl --out bench/results $(E2EFLAGS)
