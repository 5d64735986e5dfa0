#!/usr/bin/env bash
# Installs and starts what the full test suite needs: OpenLDAP's slapd and
# ldap-utils (the tests start their own slapd on a loopback port), and a
# PostgreSQL server on 127.0.0.1:5432 with trust auth and a database "test"
# (or whatever UMBRA_PG_DSN names). Safe to run again: it only does what is
# missing. Exits non-zero when a service cannot be had, so that the suite
# fails instead of skipping.
set -euo pipefail

log() { printf '[services] %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- OpenLDAP -----------------------------------------------------------
if [ ! -x /usr/sbin/slapd ] || ! command -v ldapsearch >/dev/null; then
  log "installing slapd and ldap-utils"
  # Keep the packaged daemon from starting; the tests run their own.
  as_root mkdir -p /etc/ldap && as_root touch /etc/ldap/noslapd
  apt_install slapd ldap-utils
fi
[ -x /usr/sbin/slapd ] || { log "slapd is missing after install"; exit 1; }
log "slapd: $(/usr/sbin/slapd -VV 2>&1 | head -1 | sed 's/^@(#) //')"

# --- PostgreSQL ---------------------------------------------------------
if [ -z "${UMBRA_PG_DSN:-}" ]; then
  if ! command -v pg_isready >/dev/null; then
    log "installing postgresql"
    apt_install postgresql
  fi
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    log "starting PostgreSQL"
    ver=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)
    [ -n "$ver" ] || { log "no PostgreSQL cluster found in /etc/postgresql"; exit 1; }
    as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
    for _ in $(seq 1 100); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.1; done
  fi
  pg_isready -q -h 127.0.0.1 -p 5432 || { log "PostgreSQL is not accepting connections on 127.0.0.1:5432"; exit 1; }
  # The tests connect as postgres to database test; create it when missing.
  if ! psql -h 127.0.0.1 -U postgres -d test -Atc 'select 1' >/dev/null 2>&1; then
    log "creating database test"
    psql -h 127.0.0.1 -U postgres -d postgres -c 'create database test' >/dev/null 2>&1 ||
      as_root su postgres -c "psql -c 'create database test'" >/dev/null
  fi
  psql -h 127.0.0.1 -U postgres -d test -Atc 'select 1' >/dev/null ||
    { log "cannot connect to postgres@127.0.0.1:5432/test (trust auth expected)"; exit 1; }
  log "PostgreSQL: $(psql -h 127.0.0.1 -U postgres -d test -Atc 'show server_version')"
fi
