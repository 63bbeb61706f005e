#!/usr/bin/env bash
# Chromium for the browser tests (server/internal/web), from Debian's
# packages; the tests fail in CI without it. Idempotent.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
echo "browser: installing chromium (apt)"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
