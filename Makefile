# bakery — `make run` bakes the example recipe into the local OCI layout;
# `make test` installs what the tests need and runs them all.
GO      ?= go
BIN     := bin/bakery
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/bakery-sh/bakery/internal/cli.Version=$(VERSION)

.PHONY: all build run test deps vet bench demo clean

all: build

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/bakery

## run: bake recipes/hello.bake.hcl into .bakery/ and print the result (run it twice: "up to date")
run: build
	$(BIN) bake recipes/hello.bake.hcl
	$(BIN) validate recipes/hello.bake.hcl >/dev/null

## deps: install the peers the tests use (skopeo, umoci; moto_server in .venv/)
deps:
	./scripts/deps.sh
	./scripts/moto-venv.sh

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed on:"; gofmt -l $$(git ls-files '*.go'); exit 1; }

## test: everything, on a fresh machine
test: deps vet
	$(GO) test -count=1 -timeout 15m ./...

## demo: bake an AMI against a local moto server (no AWS account needed)
demo: build
	./scripts/demo.sh

## bench: bakery vs crane on a generated 200 MB tree (ratios, sizes, peak RSS), then the
## catalog at scale: status/history/outdated/retire against moto seeded with
## SCALE_VERSIONS versions x 3 regions (10000 for the full size) and status against a
## registry holding SCALE_REGISTRY versions (calls by API name, wall time, peak RSS)
SCALE_VERSIONS ?= 300
SCALE_REGISTRY ?= 1000
bench:
	./scripts/moto-venv.sh
	$(GO) run ./internal/bench -workdir .bench
	MOTO_SERVER=$${MOTO_SERVER:-$(CURDIR)/.venv/bin/moto_server} $(GO) run ./internal/bench -workdir .bench -scale \
		-scale-versions $(SCALE_VERSIONS) -scale-registry $(SCALE_REGISTRY)

clean:
	rm -rf bin .bench
