# Developer shortcuts. The README's two commands need none of this; CI
# (.ci/run) uses these targets for the contract checks.
BUF := .tools/bin/buf

.PHONY: tools generate check-generate lint breaking test

tools:
	@bash .ci/tools.sh

# Regenerates the Go code in proto/ from the .proto files.
generate: tools
	$(BUF) generate

# Fails when the committed generated code differs from what proto/ generates.
check-generate: generate
	@if [ -n "$$(git status --porcelain -- proto)" ]; then \
		echo "generated code is out of date; run 'make generate' and commit:"; \
		git status --porcelain -- proto; exit 1; \
	fi

lint: tools
	$(BUF) lint

# Compares proto/ with BREAKING_AGAINST (default main; HEAD~1 when main is
# HEAD, as on a CI run of main itself).
breaking: tools
	@bash .ci/breaking.sh

test:
	go test ./...
