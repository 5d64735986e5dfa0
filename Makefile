# The two commands a newcomer needs are `make quickstart` (the main example,
# no server needed) and `make test` (the full suite, with the real services).

GO ?= go

.PHONY: quickstart test services bench fuzz cover

quickstart:
	$(GO) run ./examples/quickstart

# The full suite: installs/starts slapd and PostgreSQL, then runs every test
# with the race detector. UMBRA_FULL=1 turns a missing service into a failure.
test: services
	UMBRA_FULL=1 $(GO) test -race -count=1 -timeout 30m ./...

services:
	bash .ci/services.sh

# Every benchmark, with the real services, one package at a time (packages
# run in parallel would measure each other). The named benchmarks of the
# Performance table size themselves and run once; the others use go test's
# default benchtime.
NAMED_BENCH = ./internal/bench/ ./consistency/
bench: services
	UMBRA_FULL=1 $(GO) test -p 1 -run='^$$' -bench=. -benchtime=1x -timeout 60m $(NAMED_BENCH)
	UMBRA_FULL=1 $(GO) test -p 1 -run='^$$' -bench=. -timeout 60m $$($(GO) list ./... | grep -v -e /internal/bench -e '/consistency$$')

fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzMerge -fuzztime=60s ./connector

cover:
	$(GO) test -cover ./...
