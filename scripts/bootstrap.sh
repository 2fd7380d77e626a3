#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian machine, idempotently:
# the PostgreSQL 15 server with wal2json and a Java 17 runtime for local Spark (Debian
# packages), a virtualenv in .venv, and the project with its development dependencies. Safe to run again: it only
# installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
[ -x /usr/lib/postgresql/15/bin/postgres ] || need_pkgs+=(postgresql-15)
[ -f /usr/lib/postgresql/15/lib/wal2json.so ] || need_pkgs+=(postgresql-15-wal2json)
java_major=$( (java -version 2>&1 || true) | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
[ "${java_major:-0}" -ge 17 ] 2>/dev/null || need_pkgs+=(openjdk-17-jre-headless)
# MariaDB for the MySQL-source tests of spec init/check (a throwaway server, never a service).
[ -x /usr/sbin/mariadbd ] && [ -x /usr/bin/my_print_defaults ] \
    || need_pkgs+=(mariadb-server-core mariadb-client-core)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    echo "bootstrap: installing Debian packages: ${need_pkgs[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need_pkgs[@]}"
    # The Debian package starts a system cluster on 5432; the project runs its own clusters.
    $SUDO service postgresql stop >/dev/null 2>&1 || true
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "bootstrap: creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
    echo "bootstrap: installing Python packages"
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e ".[dev]"
    rm -f .venv/.installed-*
    touch "$stamp"
fi
