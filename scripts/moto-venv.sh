#!/usr/bin/env bash
# Creates the project-local venv with moto's server (idempotent) and prints its path.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
# moto 5.2 is the first to enforce S3 conditional writes (If-Match / If-None-Match → 412),
# which the team-state tests rely on; an older venv is upgraded in place.
if [ ! -x "$venv/bin/moto_server" ] || ! "$venv/bin/python" -c 'import sys, moto; sys.exit(tuple(map(int, moto.__version__.split(".")[:2])) < (5, 2))' 2>/dev/null; then
  echo "installing moto[server]>=5.2 into $venv" >&2
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check --upgrade 'moto[server]>=5.2,<6' >&2
fi
echo "$venv"
