# Agimo's entry points. `make demo` and `make test` are the README's two commands.
SHELL := /bin/bash
GO ?= go
export PATH := $(PATH):/usr/local/go/bin

.PHONY: build tools test test-unit h2spec e2e e2e-node chart-check fuzz demo bench bench-smoke pgo

build:
	$(GO) build -o bin/agimo .

# Debian packages and Go tools the tests need (hack/tools.sh: quick when all are there).
tools:
	GO=$(GO) hack/tools.sh

# README's test command: unit and integration tests with the race detector (each fuzz
# target's committed seed corpus runs as an ordinary test), the end-to-end suite against a real
# kube-apiserver, the same on a real node (helm install, real pods), the Helm chart checks
# and a smoke run of the bench suite. Time-boxed fuzzing
# is `make fuzz`: it can end early on a loaded machine, so it is not part of what must pass.
test: test-unit e2e e2e-node chart-check bench-smoke

test-unit: tools
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 600s ./...

# The HTTP/2 conformance suite against both HTTP/2 listeners (also part of test-unit;
# README's "HTTP/2 conformance" lists the cases that fail and why).
h2spec: tools
	$(GO) test -race -count=1 -run '^TestH2spec$$' -v .

# A short run of each fuzz target beyond its seeds (hack/fuzz.sh says what fails it).
FUZZTIME ?= 5s
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) hack/fuzz.sh

e2e: tools
	hack/e2e.sh

# A real one-node Kubernetes (hack/node): helm install charts/agimo, real pods from zero.
e2e-node: tools
	hack/node-e2e.sh

chart-check:
	hack/chart-check.sh

demo: tools
	hack/demo.sh

bench: tools
	$(GO) run ./bench all

# Every benchmark scenario for a second or two, so the suite cannot rot (issue 5).
bench-smoke: tools
	$(GO) run ./bench -smoke all

# Writes default.pgo, a CPU profile for profile-guided optimisation, which every build of the
# main package then picks up (go build ., the Dockerfile, hack/image.sh, the bench). It runs the
# bench's keep-alive scenarios (HTTP small and 4 KiB responses, WebSocket echo, server-sent
# events; root, like `make bench`) against agimo built without PGO, so that the profile does not
# depend on the previous one, and merges Go's CPU profiles of agimo taken over each measured
# window. None is committed: it did not lower agimo's CPU per request (README).
PGO_SCENARIOS ?= http-small http-4k ws-echo sse
pgo: tools
	$(GO) build -pgo=off -o bin/agimo-nopgo .
	$(GO) run ./bench -layouts pinned -reps 2 -d 5s -agimo $(CURDIR)/bin/agimo-nopgo -pgo default.pgo $(PGO_SCENARIOS)
