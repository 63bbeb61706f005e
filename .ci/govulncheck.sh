#!/usr/bin/env bash
# Runs govulncheck offline: the vulnerability database cannot be reached
# from here, so it is built from the golang.org/x/vulndb module (served by
# the module proxy) and cached. Fails on any reachable vulnerability in a
# dependency; standard-library findings, which only a newer Go release
# fixes, are printed and listed in the README's Security section.
set -euo pipefail
cd "$(dirname "$0")/.."

GOVULNCHECK_VERSION=v1.9.0
root=$PWD
mkdir -p .tools/bin
if [ ! -x .tools/bin/govulncheck ] || ! grep -qx "$GOVULNCHECK_VERSION" .tools/bin/.govulncheck.version 2>/dev/null; then
  echo "govulncheck: installing $GOVULNCHECK_VERSION"
  GOBIN="$root/.tools/bin" go install "golang.org/x/vuln/cmd/govulncheck@$GOVULNCHECK_VERSION"
  echo "$GOVULNCHECK_VERSION" > .tools/bin/.govulncheck.version
fi

info=$(go mod download -json golang.org/x/vulndb@latest)
vdb=$(jq -r .Dir <<<"$info")
version=$(jq -r .Version <<<"$info")
db="${XDG_CACHE_HOME:-$HOME/.cache}/careteam-govulndb/$version"
if [ ! -f "$db/index/db.json" ]; then
  echo "govulncheck: building the vulnerability database from golang.org/x/vulndb $version"
  rm -rf "$db.tmp" && mkdir -p "$db.tmp"
  (cd "$vdb" && GOFLAGS=-mod=mod go run ./cmd/indexdb -vulns data/osv -out "$db.tmp")
  rm -rf "$db" && mv "$db.tmp" "$db"
fi

out=$(mktemp)
trap 'rm -f "$out"' EXIT
.tools/bin/govulncheck -db "file://$db" -format json ./... > "$out"
# A finding is reachable when its trace reaches a function.
reachable='select(.finding != null and (.finding.trace[0].function // "") != "")'
jq -r "$reachable | \"\(.finding.osv) \(.finding.trace[0].module) \(.finding.fixed_version // \"no fix\")\"" "$out" | sort -u > "$out.findings"
if grep -qv ' stdlib ' "$out.findings"; then
  echo "govulncheck: reachable vulnerabilities in dependencies:"
  grep -v ' stdlib ' "$out.findings"
  rm -f "$out.findings"
  exit 1
fi
if [ -s "$out.findings" ]; then
  echo "govulncheck: standard-library findings (fixed by a newer Go release; see README, Security):"
  cat "$out.findings"
else
  echo "govulncheck: nothing reachable"
fi
rm -f "$out.findings"
