#!/usr/bin/env bash
# Signed-webhook ingest throughput: noop baseline vs. the hub (SQLite, optionally
# PostgreSQL), measured with wrk on 127.0.0.1. See bench/README.md.
#
#   bench/ingest.sh
#   CONNS=128 DURATION=20s PG_URL=postgres://postgres@127.0.0.1:5432/postgres bench/ingest.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"

CONNS=${CONNS:-64}
DURATION=${DURATION:-10s}
THREADS=${THREADS:-1}
REQUESTS=${REQUESTS:-}            # default: 50k per second of DURATION
PG_URL=${PG_URL:-}
READY_TIMEOUT=${READY_TIMEOUT:-60}
WRK_TIMEOUT=${WRK_TIMEOUT:-5s}
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP=${KEEP:-0}                   # 1: keep the temp dir (logs, configs) and the PG database
NOOP_BIN=${NOOP_BIN:-$ROOT/target/release/noop-server}
HUB_BIN=${HUB_BIN:-$ROOT/target/release/switchboard}
RUN_ID=${RUN_ID:-$(date +%s)-$$}
SECRET=bench-secret

log() { printf '[ingest] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ------------------------------------------------------------------ arguments
[[ $CONNS =~ ^[0-9]+$ && $CONNS -ge 1 ]] || die "CONNS must be a positive integer"
[[ $THREADS =~ ^[0-9]+$ && $THREADS -ge 1 && $THREADS -le $CONNS ]] \
    || die "THREADS must be a positive integer <= CONNS"
[[ $READY_TIMEOUT =~ ^[0-9]+$ ]] || die "READY_TIMEOUT must be seconds"
case $DURATION in
    *[0-9]s) dur_s=${DURATION%s} ;;
    *[0-9]m) dur_s=$(( ${DURATION%m} * 60 )) ;;
    *[0-9]) dur_s=$DURATION ;;
    *) die "DURATION must look like 10, 10s or 2m" ;;
esac
[[ $dur_s =~ ^[0-9]+$ && $dur_s -ge 1 && $dur_s -le 600 ]] \
    || die "DURATION must be between 1s and 10m"
REQUESTS=${REQUESTS:-$(( dur_s * 50000 ))}
[[ $REQUESTS =~ ^[0-9]+$ && $REQUESTS -ge $THREADS ]] || die "REQUESTS must be an integer >= THREADS"
[[ $RUN_ID =~ ^[A-Za-z0-9._-]+$ ]] || die "RUN_ID must match [A-Za-z0-9._-]+"

# ------------------------------------------------------------------ cleanup
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sb-bench.XXXXXX")
PIDS=()
PG_DBS=()

stop_pid() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    local rc=$? pid db
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    for db in "${PG_DBS[@]}"; do
        if [[ $KEEP == 1 ]]; then
            log "kept database $db"
        else
            psql "$PG_URL" -q -v ON_ERROR_STOP=1 \
                -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 \
                || log "could not drop database $db"
        fi
    done
    if [[ $KEEP == 1 ]]; then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ helpers
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start NAME LOGFILE CMD...: run CMD in the background, remember its pid in STARTED_PID.
start() {
    local name=$1 logfile=$2
    shift 2
    "$@" >"$logfile" 2>&1 &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
    log "started $name (pid $STARTED_PID): $*"
}

show_log() {
    local logfile=$1
    log "last lines of $logfile:"
    tail -n 40 "$logfile" >&2 || true
}

# wait_http PID LOGFILE URL METHOD WANT: poll until the status code is WANT
# ("any" = any HTTP answer), the process dies, or READY_TIMEOUT passes.
wait_http() {
    local pid=$1 logfile=$2 url=$3 method=$4 want=$5 code deadline
    deadline=$(( SECONDS + READY_TIMEOUT ))
    while (( SECONDS < deadline )); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "process $pid exited before $url was ready"
            show_log "$logfile"
            return 1
        fi
        code=$(curl -s -o /dev/null -m 2 -X "$method" -w '%{http_code}' "$url" 2>/dev/null || true)
        if [[ $want == any && $code =~ ^[1-5][0-9][0-9]$ ]] || [[ $code == "$want" ]]; then
            return 0
        fi
        sleep 0.2
    done
    log "timed out after ${READY_TIMEOUT}s waiting for $method $url (last status: ${code:-none})"
    show_log "$logfile"
    return 1
}

# smoke URL LOGFILE: one signed request outside the measured set; must get a 2xx.
smoke() {
    local url=$1 logfile=$2 sig body code
    IFS=$'\t' read -r sig body <"$SMOKE_FILE"
    code=$(curl -s -o "$WORK/smoke.out" -m 10 -w '%{http_code}' -X POST \
        -H 'content-type: application/json' -H "x-switchboard-signature: $sig" \
        --data-binary "$body" "$url" || true)
    if [[ ! $code =~ ^2 ]]; then
        log "smoke request to $url answered ${code:-nothing}: $(head -c 500 "$WORK/smoke.out" 2>/dev/null || true)"
        show_log "$logfile"
        return 1
    fi
}

declare -A R_RPS R_P50 R_P99 R_NON2XX R_SOCK R_RUN R_RSS R_NOTE
TARGETS=()
FAILED=0

# measure NAME BASE_URL PID WRAP
measure() {
    local name=$1 base=$2 pid=$3 wrap=$4 out result kv key val
    out="$WORK/wrk-$name.out"
    log "wrk -t$THREADS -c$CONNS -d$DURATION against $name ($base)"
    # In the background + wait: a Ctrl-C then reaches the INT trap at once (wrk
    # handles SIGINT itself and exits 0, which bash would take as "handled").
    BENCH_WRAP=$wrap wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --timeout "$WRK_TIMEOUT" \
        -s "$BENCH/wrk_signed.lua" "$base" -- "$REQ_FILE" "$THREADS" >"$out" 2>"$WORK/wrk-$name.err" &
    local wrk_pid=$!
    PIDS+=("$wrk_pid")
    if ! wait "$wrk_pid"; then
        log "wrk failed against $name"
        cat "$WORK/wrk-$name.err" >&2
        return 1
    fi
    result=$(grep '^RESULT ' "$out" | tail -n 1 || true)
    [[ -n $result ]] || { log "no RESULT line from wrk"; cat "$out" "$WORK/wrk-$name.err" >&2; return 1; }
    log "$name: $result"
    local -A r=()
    local -a fields
    read -ra fields <<<"${result#RESULT }"
    for kv in "${fields[@]}"; do
        key=${kv%%=*} val=${kv#*=}
        r[$key]=$val
    done
    TARGETS+=("$name")
    R_RPS[$name]=${r[rps]}
    R_P50[$name]=${r[p50_ms]}
    R_P99[$name]=${r[p99_ms]}
    R_NON2XX[$name]=${r[non2xx]}
    R_SOCK[$name]=${r[sock_errors]}
    R_RUN[$name]=${r[duration_s]}
    R_RSS[$name]=$(awk '/^VmHWM:/ { printf "%.0f", $2 / 1024 }' "/proc/$pid/status" 2>/dev/null || echo "?")
    R_NOTE[$name]=""
    if [[ ${r[exhausted]} != 0 ]]; then
        R_NOTE[$name]="ran out of requests after ${r[duration_s]}s (raise REQUESTS)"
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
        R_NOTE[$name]="${R_NOTE[$name]:+${R_NOTE[$name]}; }server died during the run"
    fi
}

fail_target() {
    local name=$1
    TARGETS+=("$name")
    R_NOTE[$name]="FAILED (see log above)"
    FAILED=1
}

write_config() {
    local file=$1 port=$2 db_url=$3
    cat >"$file" <<EOF
[server]
listen = "127.0.0.1:$port"

[database]
url = "$db_url"

[log]
level = "warn"

[auth]
print_dev_token = false

[[connectors]]
id = "bench"
kind = "generic"
secret = "$SECRET"
signature_header = "x-switchboard-signature"
signature_prefix = "sha256="
event_id = "/id"
event_kind = "/type"

[connectors.mapping]
text = "/message/text"
thread = "/conversation/id"
occurred_at = "/created_at"
customer_email = "/customer/email"
customer_name = "/customer/name"
customer_external_id = "/customer/id"
message_id = "/message/id"
EOF
}

# run_hub NAME DB_URL
run_hub() {
    local name=$1 db_url=$2 port cfg logfile pid base
    port=$(free_port)
    cfg="$WORK/$name.toml"
    logfile="$WORK/$name.log"
    base="http://127.0.0.1:$port"
    write_config "$cfg" "$port" "$db_url"
    start "$name" "$logfile" "$HUB_BIN" serve --config "$cfg"
    pid=$STARTED_PID
    if wait_http "$pid" "$logfile" "$base/readyz" GET 200 \
        && smoke "$base/webhooks/bench" "$logfile" \
        && measure "$name" "$base" "$pid" 0; then
        if grep -qE 'ERROR|panicked' "$logfile"; then
            log "$name logged errors:"
            grep -E 'ERROR|panicked' "$logfile" | tail -n 10 >&2 || true
            R_NOTE[$name]="${R_NOTE[$name]:+${R_NOTE[$name]}; }errors in log"
        fi
    else
        fail_target "$name"
    fi
    stop_pid "$pid"
}

# ------------------------------------------------------------------ 0. tools
command -v curl >/dev/null || die "curl is required"
command -v python3 >/dev/null || die "python3 is required"
if ! command -v wrk >/dev/null; then
    log "installing wrk"
    SUDO=()
    [[ $(id -u) == 0 ]] || SUDO=(sudo)
    "${SUDO[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq wrk >/dev/null
fi
if [[ -n $PG_URL ]]; then
    command -v psql >/dev/null || die "PG_URL is set but psql is missing"
    pg_host=$(python3 -c 'import sys, urllib.parse as u; print(u.urlsplit(sys.argv[1]).hostname or "")' "$PG_URL")
    case $pg_host in
        127.0.0.1 | localhost) ;;
        *) die "PG_URL must point at 127.0.0.1 or localhost, not '$pg_host'" ;;
    esac
fi

# ------------------------------------------------------------------ 1. build
if [[ $SKIP_BUILD != 1 ]]; then
    log "cargo build --release --bins"
    (cd "$ROOT" && cargo build --release --bins)
fi
[[ -x $NOOP_BIN ]] || die "missing $NOOP_BIN"
[[ -x $HUB_BIN ]] || die "missing $HUB_BIN"

# ------------------------------------------------------------------ 2. requests
REQ_FILE="$WORK/requests.tsv"
SMOKE_FILE="$WORK/smoke.tsv"
log "generating $REQUESTS signed requests (run id $RUN_ID)"
python3 "$BENCH/gen_requests.py" "$REQUESTS" --run "$RUN_ID" --secret "$SECRET" -o "$REQ_FILE"
python3 "$BENCH/gen_requests.py" 1 --run "$RUN_ID-smoke" --secret "$SECRET" -o "$SMOKE_FILE"
# The request file is ~800 MB of dirty page cache: written back while the hub runs, it
# would hold up the hub's fsyncs for up to seconds (ext4), which is the file's cost, not the
# hub's. Write it out first.
log "flushing the request file to disk"
sync

# ------------------------------------------------------------------ 3. noop baseline
# The noop server does not deduplicate, so the baseline may wrap around the
# request file (BENCH_WRAP=1): it is usually several times faster than the hub.
noop_port=$(free_port)
start noop "$WORK/noop.log" "$NOOP_BIN" --listen "127.0.0.1:$noop_port"
noop_pid=$STARTED_PID
if wait_http "$noop_pid" "$WORK/noop.log" "http://127.0.0.1:$noop_port/webhooks/bench" POST any \
    && smoke "http://127.0.0.1:$noop_port/webhooks/bench" "$WORK/noop.log" \
    && measure noop "http://127.0.0.1:$noop_port" "$noop_pid" 1; then
    :
else
    fail_target noop
fi
stop_pid "$noop_pid"

# ------------------------------------------------------------------ 4. hub on SQLite
mkdir -p "$WORK/sqlite"
run_hub hub-sqlite "sqlite://$WORK/sqlite/bench.db"

# ------------------------------------------------------------------ 5. hub on PostgreSQL
if [[ -n $PG_URL ]]; then
    pg_db="sb_bench_$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
    log "creating database $pg_db"
    if psql "$PG_URL" -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"$pg_db\"" >/dev/null; then
        PG_DBS+=("$pg_db")
        pg_db_url=$(python3 -c 'import sys, urllib.parse as u
p = u.urlsplit(sys.argv[1])
print(u.urlunsplit(p._replace(path="/" + sys.argv[2])))' "$PG_URL" "$pg_db")
        run_hub hub-postgres "$pg_db_url"
    else
        log "could not create database $pg_db"
        fail_target hub-postgres
    fi
fi

# ------------------------------------------------------------------ 6. report
noop_rps=${R_RPS[noop]:-}
printf '\nwrk -t%s -c%s -d%s, %s requests of ~1.5 KB, run %s\n' \
    "$THREADS" "$CONNS" "$DURATION" "$REQUESTS" "$RUN_ID"
printf '%-14s %10s %9s %9s %8s %8s %7s %8s %8s  %s\n' \
    target 'req/s' 'p50 ms' 'p99 ms' non-2xx sock-err 'run s' 'RSS MB' 'vs noop' note
for t in "${TARGETS[@]}"; do
    rps=${R_RPS[$t]:-}
    ratio=-
    if [[ -n $rps && -n $noop_rps && $noop_rps != 0 ]]; then
        ratio=$(awk -v a="$rps" -v b="$noop_rps" 'BEGIN { printf "%.3f", a / b }')
    fi
    printf '%-14s %10s %9s %9s %8s %8s %7s %8s %8s  %s\n' "$t" "${rps:--}" "${R_P50[$t]:--}" \
        "${R_P99[$t]:--}" "${R_NON2XX[$t]:--}" "${R_SOCK[$t]:--}" "${R_RUN[$t]:--}" \
        "${R_RSS[$t]:--}" "$ratio" "${R_NOTE[$t]:-}"
done
# One machine-readable line per target for bench/all.sh: `@bench {json}`; a figure that
# was not measured is null.
json_num() { [[ ${1:-} =~ ^[0-9]+(\.[0-9]+)?$ ]] && printf '%s' "$1" || printf 'null'; }
json_str() { local s=${1//\\/\\\\}; s=${s//\"/\\\"}; printf '"%s"' "$s"; }
for t in "${TARGETS[@]}"; do
    printf '@bench {"bench":"ingest","target":%s,"conns":%s,"threads":%s,"rps":%s,"p50_ms":%s,"p99_ms":%s,"non2xx":%s,"sock_errors":%s,"run_s":%s,"rss_mb":%s,"note":%s}\n' \
        "$(json_str "$t")" "$CONNS" "$THREADS" "$(json_num "${R_RPS[$t]:-}")" \
        "$(json_num "${R_P50[$t]:-}")" "$(json_num "${R_P99[$t]:-}")" \
        "$(json_num "${R_NON2XX[$t]:-}")" "$(json_num "${R_SOCK[$t]:-}")" \
        "$(json_num "${R_RUN[$t]:-}")" "$(json_num "${R_RSS[$t]:-}")" \
        "$(json_str "${R_NOTE[$t]:-}")"
done
exit "$FAILED"
