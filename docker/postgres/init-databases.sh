#!/bin/sh
# PostgreSQL init script: one database per Rampart service, named in POSTGRES_MULTIPLE_DATABASES
# (space-separated), owned by POSTGRES_USER. The postgres image runs it once, on an empty data
# directory; run by hand it creates only the databases that are missing.
set -e  # not -u: the image sources a script that lost its executable bit

for db in ${POSTGRES_MULTIPLE_DATABASES:-}; do
  # Verify the name is a plain identifier: it is spliced into SQL
  case "$db" in
    *[!a-z0-9_]* | [0-9]*) echo "init-databases: refusing database name '$db'" >&2; exit 1 ;;
  esac
  exists=$(psql -v ON_ERROR_STOP=1 --no-psqlrc -tA --username "$POSTGRES_USER" --dbname "${POSTGRES_DB:-$POSTGRES_USER}" \
    -c "SELECT 1 FROM pg_database WHERE datname = '$db'")
  if [ "$exists" = "1" ]; then
    echo "init-databases: $db exists"
  else
    psql -v ON_ERROR_STOP=1 --no-psqlrc -q --username "$POSTGRES_USER" --dbname "${POSTGRES_DB:-$POSTGRES_USER}" \
      -c "CREATE DATABASE \"$db\" OWNER \"$POSTGRES_USER\""
    echo "init-databases: created $db"
  fi
done
