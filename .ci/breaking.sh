#!/usr/bin/env bash
# Runs buf breaking against another revision. buf's git input cannot see the
# git-ignored third_party link, so the revision is exported to a directory
# and the link is made there too.
set -euo pipefail
cd "$(dirname "$0")/.."

against=${BREAKING_AGAINST:-main}
if [ "$(git rev-parse "$against" 2>/dev/null)" = "$(git rev-parse HEAD)" ]; then
  against=HEAD~1
fi
if ! git rev-parse -q --verify "$against^{commit}" >/dev/null; then
  echo "breaking: no revision $against to compare with; skipped"
  exit 0
fi
if [ -z "$(git ls-tree -r --name-only "$against" -- proto | grep '\.proto$' || true)" ]; then
  echo "breaking: $against has no contract yet; nothing to compare"
  exit 0
fi
base=$(mktemp -d)
trap 'rm -rf "$base"' EXIT
git archive "$against" | tar -x -C "$base"
mkdir -p "$base/third_party"
ln -s "$(readlink -f third_party/protovalidate)" "$base/third_party/protovalidate"
echo "breaking: comparing proto/ with $against"
.tools/bin/buf breaking --against "$base"
