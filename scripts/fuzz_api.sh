#!/usr/bin/env bash
# The books-api fuzz stage: schemathesis, from the service's own /api-docs, drives the real
# books-api binary on a throwaway PostgreSQL cluster through every phase (the document's
# examples, boundary coverage, random fuzzing, stateful sequences along the document's links)
# with a fixed example budget and seed. It fails on a 5xx; a status code, content type, header
# or body the document does not declare; a request outside the schema accepted, or one inside
# it refused; a protected route answering without credentials; a book still served after its
# DELETE or missing after its POST; a schemathesis warning (such as the stateful phase finding
# no data); an ERROR line, or anything at all on stderr, in the service's log; a non-zero exit
# on SIGTERM.
#
#   scripts/fuzz_api.sh [--seed N] [--max-examples N]   # defaults: FUZZ_SEED or 1,
#                                                       # FUZZ_MAX_EXAMPLES or 30 per operation
#   scripts/fuzz_api.sh --venv                          # only install; prints the venv path
#
# schemathesis and openapi-spec-validator (which the OpenAPI tests run) go into the project's
# .venv, beside moto. The binary: BOOKS_API_BIN, else a dev build. PostgreSQL binaries as the tests find them: PG_BIN, PATH, or
# /usr/lib/postgresql/*/bin; initdb/pg_ctl run as the postgres user (runuser) when root.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"

seed=${FUZZ_SEED:-1}
max_examples=${FUZZ_MAX_EXAMPLES:-30}
venv_only=false
while [ $# -gt 0 ]; do
  case "$1" in
    --seed) seed=$2; shift 2 ;;
    --max-examples) max_examples=$2; shift 2 ;;
    --venv) venv_only=true; shift ;;
    *) echo "fuzz_api.sh: unknown argument $1 (use --seed N, --max-examples N or --venv)" >&2; exit 1 ;;
  esac
done

# schemathesis 4.x: the CLI options below (phases, checks, --generation-database).
if ! "$venv/bin/python" -c '
import sys
from importlib.metadata import version
major = lambda p: int(version(p).split(".")[0])
minor = lambda p: tuple(map(int, version(p).split(".")[:2]))
sys.exit(not (major("schemathesis") == 4 and minor("schemathesis") >= (4, 32) and minor("openapi-spec-validator") >= (0, 7)))
' 2>/dev/null; then
  echo "installing schemathesis 4 and openapi-spec-validator into $venv" >&2
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check --upgrade \
    'schemathesis>=4.32,<5' 'openapi-spec-validator>=0.7,<1' >&2
fi
if $venv_only; then
  echo "$venv"
  exit 0
fi

# BOOKS_API_BIN: the binary to fuzz (scripts/test.sh passes the one its tests just built: a
# `-p books-api` build unifies other features than `--workspace` and would build it again).
bin=${BOOKS_API_BIN:-}
if [ -z "$bin" ]; then
  bin=$(cargo build -p books-api --locked --quiet --message-format=json-render-diagnostics \
    | "$venv/bin/python" -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "books-api" and m.get("executable"):
        print(m["executable"])')
fi
[ -x "$bin" ] || { echo "fuzz_api.sh: no books-api binary at '$bin'" >&2; exit 1; }

pg_bin=${PG_BIN:-}
if [ -z "$pg_bin" ] && command -v pg_ctl >/dev/null 2>&1; then
  pg_bin=$(dirname "$(readlink -f "$(command -v pg_ctl)")")
fi
if [ -z "$pg_bin" ] || [ ! -x "$pg_bin/postgres" ]; then
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
fi
[ -n "$pg_bin" ] && [ -x "$pg_bin/initdb" ] || {
  echo "fuzz_api.sh: PostgreSQL binaries not found: set PG_BIN, put pg_ctl on PATH or install postgresql" >&2
  exit 1
}

tmp=$(mktemp -d -t books-fuzz-XXXXXX)
svc_pid=
pg_up=false
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  if [ -n "$svc_pid" ] && kill -0 "$svc_pid" 2>/dev/null; then kill -KILL "$svc_pid" 2>/dev/null || true; fi
  if $pg_up; then as_pg "$pg_bin/pg_ctl" -D "$tmp/data" -m immediate stop >/dev/null 2>&1 || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { "$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pg_port=$(free_port)
api_port=$(free_port)
db_password="fuzz-pg-$RANDOM$RANDOM"
api_password="fuzz-api-$RANDOM$RANDOM"

printf '%s' "$db_password" >"$tmp/pwfile"
[ "$(id -u)" = 0 ] && chown -R postgres "$tmp"
as_pg env LC_ALL=C "$pg_bin/initdb" -D "$tmp/data" -U books --pwfile "$tmp/pwfile" \
  --auth-local=trust --auth-host=scram-sha-256 --no-sync --locale=C -E UTF8 >"$tmp/initdb.log" 2>&1 \
  || { cat "$tmp/initdb.log" >&2; exit 1; }
as_pg "$pg_bin/pg_ctl" -D "$tmp/data" -l "$tmp/postgres.log" -w -t 60 \
  -o "-p $pg_port -k $tmp -c listen_addresses=127.0.0.1 -F -c shared_buffers=16MB" start >/dev/null \
  || { cat "$tmp/postgres.log" >&2; exit 1; }
pg_up=true
"$pg_bin/psql" -X -q -h "$tmp" -p "$pg_port" -U books -d postgres -c 'CREATE DATABASE books' >/dev/null

env -i PATH="$PATH" RUST_LOG=info \
  BASIC_AUTH_USER=admin BASIC_AUTH_PASSWORD="$api_password" \
  DB_HOST=127.0.0.1 DB_PORT="$pg_port" DB_USER=books DB_PASSWORD="$db_password" DB_NAME=books \
  DB_SSLMODE=disable PORT="$api_port" BIND_ADDR=127.0.0.1 \
  "$bin" >"$tmp/service.out" 2>"$tmp/service.err" </dev/null &
svc_pid=$!

# Ready when the health check answers; the process dying first is a failure at once.
deadline=$((SECONDS + 30))
until curl -fsS -o /dev/null "http://127.0.0.1:$api_port/api/v1/healthz" 2>/dev/null; do
  if ! kill -0 "$svc_pid" 2>/dev/null; then
    echo "books-api exited during start-up:" >&2; cat "$tmp/service.out" "$tmp/service.err" >&2; exit 1
  fi
  if [ $SECONDS -ge $deadline ]; then
    echo "books-api not healthy after 30 s:" >&2; cat "$tmp/service.out" "$tmp/service.err" >&2; exit 1
  fi
  sleep 0.1
done

echo "fuzz: schemathesis $("$venv/bin/python" -c 'from importlib.metadata import version; print(version("schemathesis"))'), seed $seed, $max_examples examples per operation and phase" >&2
# A warning fails the run too: "missing test data" (every linked request a 404) would mean
# the stateful phase tested nothing.
printf '[warnings]\nfail-on = true\n' >"$tmp/schemathesis.toml"
# Every check schemathesis 4 has but object_level_authorization (one user here) and
# max_response_time (timing is no test). The ones the stage exists for: not_a_server_error,
# status_code_conformance, response_schema_conformance.
checks=not_a_server_error,status_code_conformance,content_type_conformance
checks+=,response_headers_conformance,response_schema_conformance
checks+=,negative_data_rejection,positive_data_acceptance,missing_required_header
checks+=,unsupported_method,allow_header_conformance,ignored_auth
checks+=,use_after_free,ensure_resource_availability
status=0
fuzz_started=$(date +%s%N)
# From a scratch directory: nothing (reports, example database) lands in the work tree.
(cd "$tmp" && "$venv/bin/schemathesis" --config-file "$tmp/schemathesis.toml" --no-color \
  run "http://127.0.0.1:$api_port/api-docs" \
  --phases examples,coverage,fuzzing,stateful --checks "$checks" \
  --max-examples "$max_examples" --seed "$seed" --generation-database none \
  --workers 1 --request-timeout 10 --auth "admin:$api_password" \
  --output-truncate false --report json --report-json-path "$tmp/report.json") || status=$?

# The service's own view: an ERROR line (an internal error the client saw only as a 500, or
# one it never saw, as a list cut short) or a panic fails the stage even if every answer was
# fine.
own_failures=0
if grep -n '"level":"ERROR"' "$tmp/service.out" >&2; then
  echo "fuzz: ERROR lines in the books-api log (above)" >&2
  own_failures=$((own_failures + 1))
fi
if [ -s "$tmp/service.err" ]; then
  echo "fuzz: books-api wrote to stderr:" >&2; cat "$tmp/service.err" >&2
  own_failures=$((own_failures + 1))
fi
kill -TERM "$svc_pid"
if wait "$svc_pid"; then svc_pid=; else
  echo "fuzz: books-api did not exit 0 on SIGTERM (exit $?)" >&2; svc_pid=; own_failures=$((own_failures + 1))
fi
[ $own_failures = 0 ] || status=1
ms=$((($(date +%s%N) - fuzz_started) / 1000000))
requests=$(grep -c '"target":"books_api::access"' "$tmp/service.out" || true)
echo "fuzz: seed $seed, $max_examples examples per operation: $requests requests in $((ms / 1000)).$((ms % 1000 / 100)) s" >&2
# The closing count, as test runners print it: schemathesis's test cases, plus one failure
# for each of this script's own checks that failed (and one if schemathesis gave no report).
"$venv/bin/python" - "$tmp/report.json" "$own_failures" <<'PY'
import json, sys
try:
    cases = json.load(open(sys.argv[1]))["test_cases"]
    failed = cases["with_failures"] + cases["errored"]
    passed = cases["generated"] - failed
except (OSError, ValueError, KeyError):
    passed, failed = 0, 1
print(f"fuzz: {passed} passed, {failed + int(sys.argv[2])} failed")
PY
exit $status
