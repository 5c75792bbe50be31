# Kluis: build, test and demo. `make test` and `make demo` need nothing set up
# beforehand: missing services (PostgreSQL, Mosquitto) and tools (Chromium and
# axe-core for the pages, promtool for the alert rules) are installed or started
# by deploy/dev/ensure-services.sh.
GO      ?= go
PKGS    ?= ./...
FUZZTIME ?= 5s
CMDS    := $(notdir $(wildcard cmd/*))
DIST    := dist

.PHONY: all build test vet unit unit-only fuzz services demo bench chaos dist clean

all: build

build:
	$(GO) build $(PKGS)

services:
	@bash deploy/dev/ensure-services.sh

vet:
	$(GO) vet $(PKGS)

# The slowest test packages first (with the whole tree, ./...): go test starts
# packages in the order given, so they do not run alone at the end.
SLOW_PKGS ?= ./controller/systemtest ./controller/kiosk/screen ./backend/web ./bench/chaos
UNIT_PKGS = $(if $(filter ./...,$(PKGS)),$(SLOW_PKGS) $(PKGS),$(PKGS))

# Packages tested at once. go test's default is the number of cores (2
# here), but the slow packages mostly wait (doors, timeouts, browsers,
# PostgreSQL): on the quiet 2-core machine the unit phase kept the cores
# 44 % busy at -p 2 (859 s); -p 4 ran the same packages in 717 s.
TEST_P ?= 4

unit: services unit-only

unit-only:
	$(GO) test -p $(TEST_P) -race -count=1 -timeout 18m $(UNIT_PKGS)

fuzz:
	@FUZZTIME=$(FUZZTIME) bash deploy/dev/fuzz.sh

## test: services, vet, then every test with the race detector against real services and, beside it
## (niced), a short run of every fuzz target; each phase's wall and CPU time at the end (deploy/dev/test.sh).
test:
	@bash deploy/dev/test.sh

## bench: kluis-bench measures each figure against its floor (results in bench/results/,
## summary in docs/performance.md), then the Go micro-benchmarks.
BENCH ?= all
bench: services
	$(GO) run ./cmd/kluis-bench -results bench/results $(BENCH)
	$(GO) test -run='^$$' -bench=. -benchmem $(PKGS)

## chaos: the gauntlet, CHAOS_NIGHTS seeded nights of faults (docs/chaos.md); CHAOS_SEED replays a run;
## CHAOS_BROKER is mosquitto-tls (the production shape), mosquitto or embedded;
## CHAOS_FAILOVER=1 puts the database on a primary and a standby and adds the db_failover fault.
CHAOS_NIGHTS ?= 100
CHAOS_BROKER ?= mosquitto-tls
CHAOS_FAILOVER ?= 1
chaos: services
	CHAOS_NIGHTS=$(CHAOS_NIGHTS) CHAOS_BROKER=$(CHAOS_BROKER) CHAOS_FAILOVER=$(CHAOS_FAILOVER) $(GO) test -count=1 -timeout 6h -run '^TestGauntlet$$' -v ./bench/chaos

## demo: the whole system on one machine. DATABASE_URL and MQTT_URL are used when set;
## otherwise a local PostgreSQL (started or created under ./var) and the backend's embedded broker.
demo:
	@if [ -z "$$DATABASE_URL" ]; then bash deploy/dev/ensure-services.sh postgres; fi
	$(GO) run ./cmd/kluis-demo

dist:
	@mkdir -p $(DIST)
	@for os_arch in linux/amd64 linux/arm64; do \
		for c in $(CMDS); do \
			out=$(DIST)/$${os_arch%/*}-$${os_arch#*/}/$$c; \
			echo "build $$out"; \
			CGO_ENABLED=0 GOOS=$${os_arch%/*} GOARCH=$${os_arch#*/} $(GO) build -trimpath -o $$out ./cmd/$$c || exit 1; \
		done; \
	done

clean:
	rm -rf $(DIST)
