#!/usr/bin/env bash
# pg_auto_failover for the failover test (server/faults), from Debian's
# packages: pg_autoctl and the monitor's extension for PostgreSQL 15. The
# test fails in CI without it. Idempotent.
set -euo pipefail
if command -v pg_autoctl >/dev/null 2>&1 && [ -f /usr/lib/postgresql/15/lib/pgautofailover.so ]; then
  exit 0
fi
echo "failover: installing postgresql-15-auto-failover (apt)"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-15-auto-failover >/dev/null
