#!/usr/bin/env bash
# Benchmark books-api against pgbench on the same throwaway PostgreSQL.
#
#   scripts/bench_api.sh            # ~2.5 min of load after the build
#
# Starts a private PostgreSQL cluster (as the `postgres` user when run as
# root) and the release build of books-api, both on 127.0.0.1 only; inserts
# 1000 books. Then BENCH_ROUNDS (3) rounds, alternating which side goes
# first; each round runs wrk at 64 connections for 10 s against
#   GET /api/v1/book/{id}     (basic auth, random id 1..1000)
#   GET /api/v1/book?limit=20 (public list)
# and `pgbench -S` (select-only, -c 64 -j 2 -T 10) on the same database as
# the physical reference. Reports every round with the 1-minute load
# average, the median GET-by-id req/s / pgbench TPS ratio and p99, the
# service's peak RSS (VmHWM); then grows the table to 50 000 books and times
# the full list (GET /api/v1/book, no limit) with the peak RSS after it.
# Everything is removed on exit.
#
# Needs: wrk (installed with apt-get when run as root), curl, PostgreSQL
# binaries with pgbench and psql.
#
# Environment (all optional): PG_BIN (dir with initdb/pg_ctl), CARGO_TARGET_DIR,
# BENCH_BIN (a prebuilt books-api binary: no build), BENCH_SECONDS (10),
# BENCH_ROUNDS (3), BENCH_CONNECTIONS (64), BENCH_RUST_LOG (info),
# BENCH_DB_POOL_SIZE (service default), BENCH_WORKER_THREADS (tokio default:
# one per CPU), BENCH_LIST_BOOKS (50000),
# BENCH_STRICT=1 to exit 1 when a target is missed.
#
# BENCH_CALLGRIND=1 instead runs the service under valgrind's callgrind,
# zeroes the counters once it is warm, sends GET-by-id requests with wrk
# (1 thread, 8 connections, BENCH_SECONDS) and prints the instructions the
# service spent per request, with the top functions (inclusive). Instruction
# counts do not depend on machine load, so before/after compare repeatably.
# BENCH_CALLGRIND_OUT=file keeps the callgrind profile for callgrind_annotate.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECONDS_PER_PHASE="${BENCH_SECONDS:-10}"
CONNS="${BENCH_CONNECTIONS:-64}"
ROUNDS="${BENCH_ROUNDS:-3}"
LIST_BOOKS="${BENCH_LIST_BOOKS:-50000}"
THREADS=2
BOOKS=1000
DB_USER=bench
DB_PASSWORD="bench-$$-$RANDOM"
API_USER=admin
API_PASSWORD="api-$$-$RANDOM"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench_api.sh: %s\n' "$*" >&2; exit 1; }

# --- tools -------------------------------------------------------------------
find_pg_bin() {
    if [[ -n "${PG_BIN:-}" ]]; then echo "$PG_BIN"; return; fi
    local p
    if p="$(command -v pg_ctl 2>/dev/null)"; then
        p="$(dirname "$(readlink -f "$p")")"
        if [[ -x "$p/postgres" && -x "$p/initdb" ]]; then echo "$p"; return; fi
    fi
    p="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)"
    [[ -n "$p" ]] || die "PostgreSQL binaries not found (set PG_BIN or apt-get install postgresql)"
    echo "$p"
}
PG_BIN="$(find_pg_bin)"
PGBENCH="$PG_BIN/pgbench"; [[ -x "$PGBENCH" ]] || PGBENCH="$(command -v pgbench)" || die "pgbench not found"
PSQL="$PG_BIN/psql"; [[ -x "$PSQL" ]] || PSQL="$(command -v psql)" || die "psql not found"

if ! command -v wrk >/dev/null 2>&1; then
    [[ $EUID -eq 0 ]] || die "wrk not installed (sudo apt-get install -y wrk)"
    log "installing wrk"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi

as_pg() { if [[ $EUID -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_port() {
    local p
    for _ in $(seq 1 50); do
        p=$((20000 + RANDOM % 30000))
        if port_free "$p"; then echo "$p"; return; fi
    done
    die "no free port"
}

command -v curl >/dev/null 2>&1 || die "curl not installed (apt-get install -y curl)"

# --- build -------------------------------------------------------------------
if [[ -n "${BENCH_BIN:-}" ]]; then
    BIN="$BENCH_BIN"
else
    log "building books-api (release)"
    (cd "$ROOT" && cargo build --release -p books-api --quiet)
    BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/books-api"
fi
[[ -x "$BIN" ]] || die "binary not found at $BIN"

# --- cleanup -----------------------------------------------------------------
TMP="$(mktemp -d /tmp/bench-api.XXXXXX)"
API_PID=""
PG_STARTED=""
cleanup() {
    set +e
    [[ -n "$API_PID" ]] && kill "$API_PID" 2>/dev/null && wait "$API_PID" 2>/dev/null
    [[ -n "$PG_STARTED" ]] && as_pg "$PG_BIN/pg_ctl" -D "$TMP/data" -m immediate stop >/dev/null 2>&1
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

# --- postgres ----------------------------------------------------------------
PG_PORT="$(pick_port)"
[[ $EUID -eq 0 ]] && chown postgres "$TMP"
printf '%s' "$DB_PASSWORD" > "$TMP/pwfile"
[[ $EUID -eq 0 ]] && chown postgres "$TMP/pwfile"
log "initdb + start PostgreSQL on 127.0.0.1:$PG_PORT ($PG_BIN)"
as_pg "$PG_BIN/initdb" -D "$TMP/data" -U "$DB_USER" --pwfile "$TMP/pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 --no-sync --locale=C -E UTF8 >/dev/null
as_pg "$PG_BIN/pg_ctl" -D "$TMP/data" -l "$TMP/postgres.log" -w -t 60 \
    -o "-p $PG_PORT -k $TMP -c listen_addresses=127.0.0.1 -c max_connections=200 -c shared_buffers=128MB" \
    start >/dev/null
PG_STARTED=1
export PGPASSWORD="$DB_PASSWORD"
psql_q() { "$PSQL" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U "$DB_USER" "$@"; }
psql_q -d postgres -c "CREATE DATABASE books" >/dev/null

# --- service -----------------------------------------------------------------
API_PORT="$(pick_port)"
log "starting books-api on 127.0.0.1:$API_PORT"
env -i PATH="$PATH" RUST_LOG="${BENCH_RUST_LOG:-info}" \
    BASIC_AUTH_USER="$API_USER" BASIC_AUTH_PASSWORD="$API_PASSWORD" \
    DB_HOST=127.0.0.1 DB_PORT="$PG_PORT" DB_USER="$DB_USER" DB_PASSWORD="$DB_PASSWORD" \
    DB_NAME=books DB_SSLMODE=disable PORT="$API_PORT" BIND_ADDR=127.0.0.1 \
    ${BENCH_DB_POOL_SIZE:+DB_POOL_SIZE="$BENCH_DB_POOL_SIZE"} \
    ${BENCH_WORKER_THREADS:+TOKIO_WORKER_THREADS="$BENCH_WORKER_THREADS"} \
    ${BENCH_CALLGRIND:+valgrind --tool=callgrind --callgrind-out-file="$TMP/callgrind.out"} \
    "$BIN" >"$TMP/api.log" 2>&1 &
API_PID=$!
for i in $(seq 1 600); do
    PORT="$API_PORT" "$BIN" --healthcheck && break
    kill -0 "$API_PID" 2>/dev/null || { cat "$TMP/api.log" >&2; die "books-api exited"; }
    [[ $i -eq 600 ]] && { cat "$TMP/api.log" >&2; die "books-api not healthy"; }
    sleep 0.1
done

log "inserting $BOOKS books"
psql_q -d books -c "INSERT INTO books (created_at, updated_at, title, author, year)
    SELECT now(), now(), 'Book ' || g, 'Author ' || (g % 97), 1900 + g % 120
    FROM generate_series(1, $BOOKS) g; ANALYZE books;" >/dev/null

# --- load --------------------------------------------------------------------
AUTH="Basic $(printf '%s:%s' "$API_USER" "$API_PASSWORD" | base64 -w0)"
cat > "$TMP/by_id.lua" <<LUA
math.randomseed(os.time())
wrk.headers["Authorization"] = "$AUTH"
request = function()
  return wrk.format("GET", "/api/v1/book/" .. math.random(1, $BOOKS))
end
LUA
cat > "$TMP/report.lua" <<'LUA'
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format("RESULT %.1f %.3f %.3f %d %d %d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.requests, errors, summary.errors.status))
end
LUA
cat "$TMP/report.lua" >> "$TMP/by_id.lua"
cp "$TMP/report.lua" "$TMP/list.lua"

if [[ -n "${BENCH_CALLGRIND:-}" ]]; then
    command -v callgrind_control >/dev/null || die "valgrind not installed (apt-get install -y valgrind)"
    URL="http://127.0.0.1:$API_PORT/api/v1/book/1"
    log "callgrind: warm-up, then wrk -t1 -c8 -d${SECONDS_PER_PHASE}s GET /api/v1/book/{id}"
    wrk -t1 -c8 -d3s -s "$TMP/by_id.lua" "$URL" >/dev/null
    sleep 1
    callgrind_control -z "$API_PID" >/dev/null
    read -r _ _ _ N _ NON2XX < <(wrk -t1 -c8 -d"${SECONDS_PER_PHASE}s" -s "$TMP/by_id.lua" "$URL" | grep '^RESULT' | cut -d' ' -f2-)
    callgrind_control -d "$API_PID" >/dev/null
    sleep 1
    OUT="$(ls -t "$TMP"/callgrind.out* | head -n1)"
    [[ -n "${BENCH_CALLGRIND_OUT:-}" ]] && cp "$OUT" "$BENCH_CALLGRIND_OUT"
    TOTAL="$(callgrind_annotate "$OUT" | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')"
    echo
    echo "callgrind: $N requests ($NON2XX non-2xx), $TOTAL instructions in the service = $((TOTAL / N)) per request"
    echo "top functions, inclusive instructions per request:"
    callgrind_annotate --inclusive=yes --threshold=100 "$OUT" 2>/dev/null \
        | awk -v n="$N" '/^ *[0-9,]+ / {c=$1; gsub(",", "", c); $1=""; if (c / n >= 300) printf "%9d  %s\n", c / n, substr($0, 1, 160)}' \
        | head -n "${BENCH_CALLGRIND_TOP:-60}"
    exit 0
fi

run_wrk() { # name script url -> "rps p50 p99 requests errors non2xx"
    wrk -t"$THREADS" -c"$CONNS" -d"${SECONDS_PER_PHASE}s" -s "$2" "$3" > "$TMP/wrk-$1.txt"
    grep '^RESULT' "$TMP/wrk-$1.txt" | cut -d' ' -f2-
}
run_pgbench() { # seconds -> TPS
    "$PGBENCH" -S -n -c "$CONNS" -j "$THREADS" -T "$1" -h 127.0.0.1 -p "$PG_PORT" -U "$DB_USER" books \
        > "$TMP/pgbench.txt" 2>&1
    local tps
    tps="$(awk '/^tps = / {print $3; exit}' "$TMP/pgbench.txt")"
    [[ -n "$tps" ]] || { cat "$TMP/pgbench.txt" >&2; die "pgbench failed"; }
    printf '%.1f' "$tps"
}
load1() { cut -d' ' -f1 /proc/loadavg; }
# CPU time (clock ticks, user+system) of a process, and of PostgreSQL (postmaster + backends).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
PG_PID="$(head -n1 "$TMP/data/postmaster.pid")"
pg_ticks() { # live backends, plus the postmaster's reaped children (pgbench's backends exit)
    local t p
    t="$(awk '{print $14 + $15 + $16 + $17}' "/proc/$PG_PID/stat")"
    for p in $(pgrep -P "$PG_PID"); do t=$((t + $(cpu_ticks "$p"))); done
    echo "$t"
}
HZ="$(getconf CLK_TCK)"
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
NL=$'\n'

"$PGBENCH" -i -q -s 1 -h 127.0.0.1 -p "$PG_PORT" -U "$DB_USER" books >/dev/null 2>&1
BY_ID_URL="http://127.0.0.1:$API_PORT/api/v1/book/1"
LIST_URL="http://127.0.0.1:$API_PORT/api/v1/book?limit=20"
log "warm-up (unrecorded): wrk 2 s per route, pgbench 2 s"
wrk -t"$THREADS" -c"$CONNS" -d2s -s "$TMP/by_id.lua" "$BY_ID_URL" >/dev/null
wrk -t"$THREADS" -c"$CONNS" -d2s -s "$TMP/list.lua" "$LIST_URL" >/dev/null
run_pgbench 2 >/dev/null

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
ROWS=""
RATIOS=""
P99S=""
service_phase() {
    log "round $round: wrk GET /api/v1/book/{id}, $CONNS connections, ${SECONDS_PER_PHASE}s"
    local api0 pg0
    api0="$(cpu_ticks "$API_PID")"; pg0="$(pg_ticks)"
    read -r ID_RPS ID_P50 ID_P99 ID_N ID_ERR ID_NON2XX < <(run_wrk by_id "$TMP/by_id.lua" "$BY_ID_URL")
    ID_LOAD="$(load1)"
    # CPU per request (µs): the service's and PostgreSQL's, during the by-id phase.
    API_US="$(awk -v t="$(( $(cpu_ticks "$API_PID") - api0 ))" -v hz="$HZ" -v n="$ID_N" 'BEGIN {printf "%.0f", t / hz * 1e6 / n}')"
    PG_US="$(awk -v t="$(( $(pg_ticks) - pg0 ))" -v hz="$HZ" -v n="$ID_N" 'BEGIN {printf "%.0f", t / hz * 1e6 / n}')"
    log "round $round: wrk GET /api/v1/book?limit=20"
    read -r LS_RPS LS_P50 LS_P99 LS_N LS_ERR LS_NON2XX < <(run_wrk list "$TMP/list.lua" "$LIST_URL")
}
pg_phase() {
    log "round $round: pgbench -S -c $CONNS -j $THREADS -T $SECONDS_PER_PHASE"
    local pg0
    pg0="$(pg_ticks)"
    PG_TPS="$(run_pgbench "$SECONDS_PER_PHASE")"
    PG_LOAD="$(load1)"
    PGB_US="$(awk -v t="$(( $(pg_ticks) - pg0 ))" -v hz="$HZ" -v tps="$PG_TPS" -v s="$SECONDS_PER_PHASE" 'BEGIN {printf "%.0f", t / hz * 1e6 / (tps * s)}')"
}
for round in $(seq 1 "$ROUNDS"); do
    # Alternate who goes first, so a drift in machine load hits both alike.
    if (( round % 2 )); then service_phase; pg_phase; else pg_phase; service_phase; fi
    RATIO="$(awk -v a="$ID_RPS" -v b="$PG_TPS" 'BEGIN {printf "%.1f", 100 * a / b}')"
    RATIOS+="$RATIO$NL"
    P99S+="$ID_P99$NL"
    ROWS+="$(printf '| %d | %s | %s | %s | %s/%s | %s + %s | %s | %s | %s | %s | %s %% | %s / %s |' \
        "$round" "$ID_RPS" "$ID_P50" "$ID_P99" "$ID_ERR" "$ID_NON2XX" "$API_US" "$PG_US" "$LS_RPS" "$LS_P99" "$PG_TPS" "$PGB_US" "$RATIO" "$ID_LOAD" "$PG_LOAD")$NL"
done
RSS_KB="$(awk '/^VmHWM:/ {print $2}' "/proc/$API_PID/status")"
RATIO_MED="$(printf '%s' "$RATIOS" | median)"
P99_MED="$(printf '%s' "$P99S" | median)"
P99_MAX="$(printf '%s' "$P99S" | sort -g | tail -n1)"

# --- the full list of LIST_BOOKS books ---------------------------------------
if (( LIST_BOOKS > 0 )); then
log "growing the table to $LIST_BOOKS books; timing GET /api/v1/book (no limit) 3 times"
psql_q -d books -c "INSERT INTO books (created_at, updated_at, title, author, year)
    SELECT now(), now(), 'Book ' || g, 'Author ' || (g % 97), 1900 + g % 120
    FROM generate_series($((BOOKS + 1)), $LIST_BOOKS) g; ANALYZE books;" >/dev/null
LIST_TIMES=""
for _ in 1 2 3; do
    out="$(curl -sS -o "$TMP/list.json" -w '%{http_code} %{time_total} %{size_download}' "http://127.0.0.1:$API_PORT/api/v1/book")"
    read -r code secs bytes <<<"$out"
    [[ "$code" == 200 ]] || die "list answered $code"
    LIST_TIMES+="$secs$NL"
done
LIST_COUNT="$(grep -o '"ID":' "$TMP/list.json" | wc -l)"
[[ "$LIST_COUNT" == "$LIST_BOOKS" ]] || die "list returned $LIST_COUNT books, expected $LIST_BOOKS"
LIST_MED_MS="$(printf '%s' "$LIST_TIMES" | median | awk '{printf "%.0f", $1 * 1000}')"
LIST_MB="$(awk -v b="$bytes" 'BEGIN {printf "%.1f", b / 1048576}')"
RSS_LIST_KB="$(awk '/^VmHWM:/ {print $2}' "/proc/$API_PID/status")"
else
    LIST_MED_MS="-"; LIST_MB="-"; RSS_LIST_KB="$RSS_KB"
fi

# --- report ------------------------------------------------------------------
RSS_MB="$(awk -v k="$RSS_KB" 'BEGIN {printf "%.1f", k / 1024}')"
RSS_LIST_MB="$(awk -v k="$RSS_LIST_KB" 'BEGIN {printf "%.1f", k / 1024}')"
verdict() { if awk "BEGIN {exit !($1)}"; then echo "PASS"; else echo "MISS"; fi; }
V_RATIO="$(verdict "$RATIO_MED >= 60")"
V_P99="$(verdict "$P99_MED < 5")"
V_RSS="$(verdict "$RSS_LIST_MB < 50")"

cat <<EOF

books-api benchmark ($(nproc) CPUs; load average before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg); $CONNS connections, ${SECONDS_PER_PHASE}s per phase, $ROUNDS rounds alternating, loopback, RUST_LOG=${BENCH_RUST_LOG:-info})

| round | by-id req/s | p50 ms | p99 ms | err/non-2xx | CPU µs/req (service + PostgreSQL) | list?limit=20 req/s | p99 ms | pgbench -S TPS | PostgreSQL CPU µs/txn | by-id ÷ pgbench | load1 (by-id / pgbench) |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|
${ROWS}
GET-by-id req/s / pgbench TPS, median of $ROUNDS = ${RATIO_MED} %   (target >= 60 %: ${V_RATIO})
GET-by-id p99, median of $ROUNDS = ${P99_MED} ms (max ${P99_MAX})   (target < 5 ms: ${V_P99})
books-api peak RSS (VmHWM) after the rounds = ${RSS_MB} MB
GET /api/v1/book, all $LIST_BOOKS books (${LIST_MB} MB of JSON): median of 3 = ${LIST_MED_MS} ms; peak RSS after it = ${RSS_LIST_MB} MB   (target < 50 MB: ${V_RSS})
EOF

if [[ "${BENCH_STRICT:-0}" == 1 && "$V_RATIO$V_P99$V_RSS" != PASSPASSPASS ]]; then
    exit 1
fi
