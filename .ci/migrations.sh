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

# New migrations are expand-only: during a rolling upgrade the previous
# careteamd serves the same database for a while, so a migration may add
# but not take away or rename what it reads, and may not hold a long lock
# on a table that has rows. Checked for migrations after 00019 (the ones
# before were released with the rule unwritten); a line
# "-- contract: <why the previous release no longer needs it>" lets a
# migration take away what the release before the previous one used.
status=0
for f in "$dir"/*.sql; do
  n=$(basename "$f"); n=${n%%_*}
  if (( 10#$n <= 19 )); then continue; fi
  sql=$(sed -e 's/--.*$//' "$f" | tr '\n' ' ' | tr -s ' ')
  # The mark careteamd reads too (postgres.contractLine): a line of its own.
  if grep -qE -- '^[[:space:]]*-- contract:' "$f"; then continue; fi
  for pattern in 'DROP COLUMN' 'RENAME COLUMN' 'RENAME TO' 'DROP TABLE' 'ALTER COLUMN [^;]* TYPE' 'SET NOT NULL'; do
    if grep -qiE "$pattern" <<<"$sql"; then
      echo "migrations: $f: '$pattern' breaks the careteamd still serving during a rolling upgrade (or locks a table long)"
      status=1
    fi
  done
  # An index on a table the file does not create is built CONCURRENTLY
  # (in a migration marked "-- +goose NO TRANSACTION"), so writes go on.
  while read -r table; do
    [ -z "$table" ] && continue
    if ! grep -qiE "CREATE TABLE (IF NOT EXISTS )?$table[ (]" <<<"$sql"; then
      echo "migrations: $f: an index on $table is built without CONCURRENTLY, blocking writes while it builds"
      status=1
    fi
  done < <(grep -oiE 'CREATE (UNIQUE )?INDEX [A-Za-z_0-9 ]*ON [A-Za-z_0-9]+' <<<"$sql" | grep -viE 'INDEX CONCURRENTLY' | awk '{print $NF}')
done
if (( status != 0 )); then
  exit 1
fi
echo "migrations: new ones are expand-only"
