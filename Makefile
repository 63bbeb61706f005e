# Developer shortcuts. The README's two commands need none of this; CI
# (.ci/run) uses these targets for the contract checks.
BUF := .tools/bin/buf

.PHONY: tools generate check-generate web check-web lint breaking test

tools:
	@bash .ci/tools.sh

# Regenerates the Go code in proto/ from the .proto files.
generate: tools
	$(BUF) generate

# Everything proto/ generates: the Go code beside it, the web app's
# TypeScript and the OpenAPI description.
GENERATED := proto web/src/gen server/internal/web/openapi

# Fails when the committed generated code differs from what proto/ generates.
check-generate: generate
	@if [ -n "$$(git status --porcelain -- $(GENERATED))" ]; then \
		echo "generated code is out of date; run 'make generate' and commit:"; \
		git status --porcelain -- $(GENERATED); exit 1; \
	fi

# Builds the web app into server/internal/web/dist, which careteamd embeds.
web: tools
	cd web && npm run build

# Fails when the committed build differs from what web/ builds.
check-web: web
	@if [ -n "$$(git status --porcelain -- server/internal/web/dist)" ]; then \
		echo "the web app's build is out of date; run 'make web' and commit:"; \
		git status --porcelain -- server/internal/web/dist; exit 1; \
	fi

lint: tools
	$(BUF) lint

# Compares proto/ with BREAKING_AGAINST (default main; HEAD~1 when main is
# HEAD, as on a CI run of main itself).
breaking: tools
	@bash .ci/breaking.sh

test:
	go test ./...
