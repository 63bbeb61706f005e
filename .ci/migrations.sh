#!/usr/bin/env bash
# Released migrations never change: since this check was added, no commit
# may modify, delete or rename a migration file, only add new ones. A
# database that applied a migration never runs it again, so an edit would
# reach only databases made after it. (Files edited before the check are
# brought in line by migration 00015 and tested against their released
# forms in server/internal/store/postgres/testdata/released.)
set -euo pipefail
cd "$(dirname "$0")/.."

dir=server/internal/store/postgres/migrations
since=$(git log --format=%H --diff-filter=A -1 -- .ci/migrations.sh)
if [ -z "$since" ]; then
  # Not committed yet: check the working tree against HEAD.
  changed=$(git diff --name-status --diff-filter=MDR HEAD -- "$dir")
else
  changed=$(git log --format='%h %s' --name-status --diff-filter=MDR "$since"..HEAD -- "$dir")
  changed+=$(git diff --name-status --diff-filter=MDR HEAD -- "$dir")
fi
if [ -n "$changed" ]; then
  echo "released migrations were changed; add a new migration instead:"
  echo "$changed"
  exit 1
fi
echo "migrations: no released file changed"
