# bakery — `make run` bakes the example container recipes into the local OCI layout;
# `make test` installs what the tests need and runs them all.
GO      ?= go
BIN     := bin/bakery
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/bakery-sh/bakery/internal/cli.Version=$(VERSION)

.PHONY: all build run test deps vet bench demo chaos clean fuzz fuzz-short

all: build

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/bakery

## run: bake the example containers into .bakery/ and print the result (run it twice: "up to date"):
## hello, and the base + app pair os and greeter (greeter's base = "recipe:os": os bakes first)
RUN_RECIPES := recipes/hello.bake.hcl recipes/os.bake.hcl recipes/greeter.bake.hcl
run: build
	$(BIN) bake $(RUN_RECIPES)
	$(BIN) validate $(RUN_RECIPES) >/dev/null

## deps: install the peers the tests use (skopeo, umoci; moto_server, spdx-tools and
## in-toto-attestation in .venv/)
deps:
	./scripts/deps.sh
	./scripts/moto-venv.sh
	./scripts/sbom-venv.sh

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed on:"; gofmt -l $$(git ls-files '*.go'); exit 1; }

## test: everything, on a fresh machine, under the race detector (it needs cgo: deps installs gcc),
## the fuzz targets' seed corpora as tests, then new fuzzing of each target for FUZZTIME_SHORT (5s):
## every target ran 4 minutes without a find before this came back (a find fails CI: fix it, see fuzz).
test: deps vet
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 30m ./...
	@$(MAKE) --no-print-directory fuzz-short

## fuzz-short: run every fuzz target for FUZZTIME_SHORT each (make test, CI); fuzz: for FUZZTIME each.
## Go fuzzes one target per run. A crash is written to PKG/testdata/fuzz/TARGET/ (commit it:
## plain `go test` replays it); the corpus grown along the way stays in Go's cache. A run that
## ends on Go 1.26's fuzztime deadline race with nothing found is repeated (scripts/fuzz-target.sh).
FUZZ_TARGETS   := recipes:FuzzLoad bake/oci:FuzzTarballLayer catalog/ami:FuzzAMITags \
                  catalog/ami:FuzzEventTag catalog/ami:FuzzMarkTag catalog/oci:FuzzLayoutIndex \
                  internal/sbom/intoto:FuzzEncodeStatement
FUZZTIME       ?= 10m
FUZZTIME_SHORT ?= 5s
# Inputs that find new code are minimised for at most this long (Go's default, 60s, would eat short runs).
FUZZMINIMIZE   ?= 5s
FUZZPARALLEL   ?= 1

fuzz-short:
	@$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZTIME_SHORT)

fuzz:
	@missing=$$(git ls-files '*_test.go' | xargs grep -hoE '^func Fuzz[A-Za-z0-9_]+' | sed 's/^func //' | sort -u | \
		while read -r n; do case " $(FUZZ_TARGETS) " in *":$$n "*) ;; *) echo "$$n";; esac; done); \
	test -z "$$missing" || { echo "fuzz targets missing from FUZZ_TARGETS in the Makefile: $$missing"; exit 1; }
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t#*:}; \
		echo "fuzz $$name in ./$$pkg for $(FUZZTIME)"; \
		scripts/fuzz-target.sh "$(GO)" "$$pkg" "$$name" "$(FUZZTIME)" "$(FUZZMINIMIZE)" "$(FUZZPARALLEL)"; \
	done

## demo: bake an AMI against a local moto server (no AWS account needed)
demo: build
	./scripts/demo.sh

## chaos: the whole lifecycle through a fault-injecting proxy, with SIGINTs and
## SIGKILLs, for SEEDS seeds (default 20) from 1; SEED=N replays one seed
SEEDS ?= 20
chaos:
	BAKERY_CHAOS_SEEDS=$(SEEDS) BAKERY_CHAOS_SEED=$(SEED) $(GO) test -count=1 -v -timeout 0 -run 'TestChaos$$' ./internal/chaos

## bench: bakery vs crane on a generated 200 MB tree (ratios, sizes, peak RSS), a folder of six
## linked recipes baked with --parallel 1 vs --parallel 4 (ratio), then the
## catalog at scale: status/history/outdated/retire against moto seeded with
## SCALE_VERSIONS versions x 3 regions and status against a registry holding
## SCALE_REGISTRY versions (calls by API name, wall time, peak RSS). The default is
## small (300: about a minute of seeding); the issue's full size (30,000 AMIs) is
##   make bench SCALE_VERSIONS=10000
## about 4 minutes of seeding and 3 to 10 of measuring on 2 cores, moto_server ~400 MiB
SCALE_VERSIONS ?= 300
SCALE_REGISTRY ?= 1000
bench:
	./scripts/moto-venv.sh
	$(GO) run ./internal/bench -workdir .bench
	MOTO_SERVER=$${MOTO_SERVER:-$(CURDIR)/.venv/bin/moto_server} $(GO) run ./internal/bench -workdir .bench -scale \
		-scale-versions $(SCALE_VERSIONS) -scale-registry $(SCALE_REGISTRY)

clean:
	rm -rf bin .bench
