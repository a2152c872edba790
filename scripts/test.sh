#!/usr/bin/env bash
# The test command: installs what the tests need (moto into .venv, PostgreSQL binaries
# if missing), then runs every test of the workspace against real moto and PostgreSQL.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

venv=$(scripts/moto-venv.sh)
export MOTO_SERVER="$venv/bin/moto_server"

if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing PostgreSQL (initdb missing)" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  else
    echo "PostgreSQL binaries (initdb) are missing: install the postgresql package" >&2
    exit 1
  fi
fi

# Debug info off for dependencies (see Cargo.toml); tests share one build.
cargo test --workspace --locked "$@"
