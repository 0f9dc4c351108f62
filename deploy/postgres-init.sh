#!/bin/sh
# PostgreSQL's first start (docker-entrypoint-initdb.d): one database and one login per
# service, each login owning only its database. Every password is checked before anything
# is created: a missing or example one (deploy/compose.env.example) stops the start.
set -eu
SERVICES="profile tiering outreach complaints"
refuse_example() {
  case "$2" in
    "" | change-me*) echo "$1 is unset or still the example value" >&2; exit 1 ;;
  esac
}
refuse_example POSTGRES_PASSWORD "${POSTGRES_PASSWORD:-}"
for service in $SERVICES; do
  variable="CRM_$(echo "$service" | tr '[:lower:]' '[:upper:]')_DB_PASSWORD"
  refuse_example "$variable" "$(printenv "$variable" || true)"
done
for service in $SERVICES; do
  variable="CRM_$(echo "$service" | tr '[:lower:]' '[:upper:]')_DB_PASSWORD"
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v service="crm_$service" -v password="$(printenv "$variable")" <<'SQL'
CREATE ROLE :"service" LOGIN PASSWORD :'password';
CREATE DATABASE :"service" OWNER :"service";
REVOKE ALL ON DATABASE :"service" FROM PUBLIC;
SQL
done
