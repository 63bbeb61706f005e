#!/usr/bin/env bash
# Installs the code-generation and lint tools into .tools/ (git-ignored) at
# pinned versions, and links protovalidate's validate.proto from the Go module
# cache into third_party/ (never copied into the repository). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

BUF_VERSION=1.75.0
PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2
PROTOC_GEN_OPENAPIV2_VERSION=v2.34.0
PROTOVALIDATE_VERSION=v1.2.2

root=$PWD
mkdir -p .tools/bin

if [ ! -x .tools/node_modules/.bin/buf ] || ! .tools/node_modules/.bin/buf --version | grep -qx "$BUF_VERSION"; then
  echo "tools: installing buf $BUF_VERSION (npm)"
  npm install --silent --no-audit --no-fund --prefix .tools "@bufbuild/buf@$BUF_VERSION" >/dev/null
fi
ln -sfn ../node_modules/.bin/buf .tools/bin/buf

install_go() { # name module version
  if [ ! -x ".tools/bin/$1" ] || ! grep -qx "$3" ".tools/bin/.$1.version" 2>/dev/null; then
    echo "tools: installing $1 $3"
    GOBIN="$root/.tools/bin" go install "$2@$3"
    echo "$3" >".tools/bin/.$1.version"
  fi
}
install_go protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go "$PROTOC_GEN_GO_VERSION"
install_go protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC_VERSION"
install_go protoc-gen-openapiv2 github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2 "$PROTOC_GEN_OPENAPIV2_VERSION"

# go mod tidy drops a require on a module without Go packages, so the version
# is pinned here rather than in go.mod.
go mod download "github.com/bufbuild/protovalidate@$PROTOVALIDATE_VERSION"
pv=$(go list -m -f '{{.Dir}}' "github.com/bufbuild/protovalidate@$PROTOVALIDATE_VERSION")
mkdir -p third_party
ln -sfn "$pv/proto/protovalidate" third_party/protovalidate

# The web app's build tools and protoc-gen-es, from its lock file.
if [ ! -d web/node_modules ] || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then
  echo "tools: installing the web app's npm modules"
  (cd web && npm ci --silent --no-audit --no-fund)
fi

# The FHIR client and R4 validator the FHIR endpoint's tests drive it with.
if [ ! -d fhir-check/node_modules ] || [ fhir-check/package-lock.json -nt fhir-check/node_modules/.package-lock.json ]; then
  echo "tools: installing fhir-check's npm modules"
  (cd fhir-check && npm ci --silent --no-audit --no-fund)
fi
