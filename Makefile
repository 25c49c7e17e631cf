# Agimo's entry points. `make demo` and `make test` are the README's two commands.
SHELL := /bin/bash
GO ?= go
export PATH := $(PATH):/usr/local/go/bin

.PHONY: build test test-unit e2e chart-check fuzz demo bench bench-smoke

build:
	$(GO) build -o bin/agimo .

# Everything CI runs: unit and integration tests with the race detector, the end-to-end
# suite against a real kube-apiserver, and the Helm chart checks.
test: test-unit fuzz e2e chart-check bench-smoke

test-unit:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 600s ./...

# A short run of each fuzz target, so their invariants are exercised on every change.
FUZZTIME ?= 5s
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$f"; \
	    $(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

e2e:
	hack/e2e.sh

chart-check:
	hack/chart-check.sh

demo:
	hack/demo.sh

bench:
	$(GO) run ./bench all

# Every benchmark scenario for a second or two, so the suite cannot rot (issue 5).
bench-smoke:
	$(GO) run ./bench -smoke all
