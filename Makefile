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

## test: everything, on a fresh machine, under the race detector (it needs cgo: deps installs gcc)
test: deps vet
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 30m ./...

## demo: bake an AMI against a local moto server (no AWS account needed)
demo: build
	./scripts/demo.sh

## bench: bakery vs crane on a generated 200 MB tree (ratios, sizes, peak RSS)
bench:
	$(GO) run ./internal/bench -workdir .bench

clean:
	rm -rf bin .bench
