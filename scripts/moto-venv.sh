#!/usr/bin/env bash
# Creates the project-local venv with moto's server (idempotent) and prints its path.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
if [ ! -x "$venv/bin/moto_server" ]; then
  echo "installing moto[server] into $venv" >&2
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]>=5,<6' >&2
fi
echo "$venv"
