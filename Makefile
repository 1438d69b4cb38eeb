# roam: see README.md. `make demo` shows roam at work; `make test` runs every test.
GO       ?= go
PKGS     := ./...
FUZZTIME ?= 20s
BENCHTIME ?= 2s

.PHONY: all build deps check test-short test vet staticcheck tidy-check race bench bench-once fuzz demo clean

all: build

deps:
	@scripts/deps.sh

build:
	$(GO) build -o bin/ ./cmd/...

STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

vet:
	$(GO) vet $(PKGS)
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { echo "gofmt needed:"; gofmt -l .; exit 1; }

staticcheck:
	$(GO) run $(STATICCHECK) $(PKGS)

# go.mod and go.sum are what `go mod tidy` makes of the tree (-diff changes
# nothing and fails, showing the difference, when they are not).
tidy-check:
	$(GO) mod tidy -diff

# The first tier: static checks, in well under a minute once modules are cached.
check: vet staticcheck tidy-check

# The second tier, for a developer's loop: every test but the race detector,
# the soak and the QEMU guests (privileged tests run when this runs as root).
test-short:
	$(GO) test -short -count=1 -skip 'TestSoak|TestPrivilegedQEMU' $(PKGS)

# The full suite, which .ci/run calls: the checks, every test with the race
# detector (privileged tests, TestPrivileged..., run as root and skip, saying
# why, otherwise), the allocation guards without it, each benchmark once and
# each fuzz target for a few seconds.
test: deps check
	$(GO) test -race -count=1 -timeout 40m $(PKGS)
	$(GO) test -count=1 -run 'NoAllocs' $(PKGS)
	$(MAKE) --no-print-directory bench-once
	$(MAKE) --no-print-directory fuzz FUZZTIME=$(or $(FUZZTIME_SHORT),3s)

# Each benchmark run once, so none of them rots.
bench-once:
	$(GO) test -count=1 -run '^$$' -bench . -benchtime 1x $(PKGS)

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
