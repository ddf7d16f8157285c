#!/usr/bin/env bash
# Several nodes on one PostgreSQL: signed-webhook ingest of three `switchboard serve` nodes
# on one database (three wrk processes, one per node, summed) against one node with the same
# total connections, in the same run. Prints both rates and their ratio. See bench/README.md.
#
#   bench/multinode.sh
#   NODES=3 CONNS=96 DURATION=15s PG_URL=postgres://postgres@127.0.0.1:5432/postgres bench/multinode.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"

NODES=${NODES:-3}
CONNS=${CONNS:-96}                # total connections, split evenly across the nodes
DURATION=${DURATION:-10s}
REQUESTS=${REQUESTS:-}            # per phase; default 40k per second of DURATION
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}
ROLES=${ROLES:-}                  # e.g. "ingest" to measure ingest alone; default all roles
READY_TIMEOUT=${READY_TIMEOUT:-60}
SKIP_BUILD=${SKIP_BUILD:-0}
HUB_BIN=${HUB_BIN:-$ROOT/target/release/switchboard}
RUN_ID=${RUN_ID:-$(date +%s)-$$}
SECRET=bench-secret

log() { printf '[multinode] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $NODES =~ ^[0-9]+$ && $NODES -ge 2 && $NODES -le 8 ]] || die "NODES must be 2..8"
[[ $CONNS =~ ^[0-9]+$ && $CONNS -ge $NODES ]] || die "CONNS must be an integer >= NODES"
case $DURATION in
    *[0-9]s) dur_s=${DURATION%s} ;;
    *[0-9]) dur_s=$DURATION ;;
    *) die "DURATION must look like 10 or 10s" ;;
esac
[[ $dur_s =~ ^[0-9]+$ && $dur_s -ge 1 && $dur_s -le 300 ]] || die "DURATION must be 1s..300s"
REQUESTS=${REQUESTS:-$(( dur_s * 40000 ))}
[[ $RUN_ID =~ ^[A-Za-z0-9._-]+$ ]] || die "RUN_ID must match [A-Za-z0-9._-]+"
pg_host=$(python3 -c 'import sys, urllib.parse as u; print(u.urlsplit(sys.argv[1]).hostname or "")' "$PG_URL")
case $pg_host in
    127.0.0.1 | localhost) ;;
    *) die "PG_URL must point at 127.0.0.1 or localhost, not '$pg_host'" ;;
esac
for tool in wrk psql curl python3; do
    command -v "$tool" >/dev/null || die "$tool is required (wrk: apt-get install wrk)"
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sb-multinode.XXXXXX")
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
        psql "$PG_URL" -q -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 \
            || log "could not drop database $db"
    done
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# fresh_db: creates a database; its URL in DB_URL (globals, not $(...): cleanup needs PG_DBS).
fresh_db() {
    local db
    db="sb_multinode_$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
    psql "$PG_URL" -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"$db\"" >/dev/null
    PG_DBS+=("$db")
    DB_URL=$(python3 -c 'import sys, urllib.parse as u
p = u.urlsplit(sys.argv[1])
print(u.urlunsplit(p._replace(path="/" + sys.argv[2])))' "$PG_URL" "$db")
}

write_config() {
    local file=$1 port=$2 db_url=$3 roles_line=""
    [[ -n $ROLES ]] && roles_line="roles = \"$ROLES\""
    cat >"$file" <<EOF
[server]
listen = "127.0.0.1:$port"
$roles_line
[database]
url = "$db_url"
[log]
level = "warn"
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

# start_node NAME DB_URL: starts a node, waits for /readyz; its port in NODE_PORT, its pid
# in NODE_PID.
start_node() {
    local name=$1 db_url=$2 port cfg deadline
    port=$(free_port)
    cfg="$WORK/$name.toml"
    write_config "$cfg" "$port" "$db_url"
    "$HUB_BIN" serve --config "$cfg" >"$WORK/$name.log" 2>&1 &
    NODE_PID=$!
    PIDS+=("$NODE_PID")
    deadline=$(( SECONDS + READY_TIMEOUT ))
    until curl -sf -o /dev/null -m 2 "http://127.0.0.1:$port/readyz"; do
        (( SECONDS < deadline )) || { tail -n 30 "$WORK/$name.log" >&2; die "$name not ready"; }
        sleep 0.2
    done
    NODE_PORT=$port
}

# wrk_run OUT PORT CONNS REQ_FILE: one wrk process (background); its pid in WRK_PID.
wrk_run() {
    local out=$1 port=$2 conns=$3 file=$4
    BENCH_PATH=/webhooks/bench wrk -t1 -c"$conns" -d"$DURATION" --timeout 5s \
        -s "$BENCH/wrk_signed.lua" "http://127.0.0.1:$port" -- "$file" 1 >"$out" 2>&1 &
    WRK_PID=$!
    PIDS+=("$WRK_PID")
}

field() { grep '^RESULT ' "$1" | tail -n 1 | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k { print $2 }'; }

if [[ $SKIP_BUILD != 1 ]]; then
    log "cargo build --release --bins"
    (cd "$ROOT" && cargo build --release --bins)
fi
[[ -x $HUB_BIN ]] || die "missing $HUB_BIN"

# Distinct event ids per file, so no phase measures the duplicate path.
log "generating $REQUESTS signed requests per phase (run $RUN_ID)"
python3 "$BENCH/gen_requests.py" "$REQUESTS" --run "$RUN_ID-single" --secret "$SECRET" -o "$WORK/single.tsv"
per_node=$(( REQUESTS / NODES + 1 ))
for ((i = 1; i <= NODES; i++)); do
    python3 "$BENCH/gen_requests.py" "$per_node" --run "$RUN_ID-n$i" --secret "$SECRET" -o "$WORK/n$i.tsv"
done
# Written back during a phase, the request files would hold up the database's fsyncs.
sync

# Phase 1: one node, all connections.
fresh_db
start_node single "$DB_URL"
p1=$NODE_PORT
single_pid=$NODE_PID
log "phase 1: one node, wrk -c$CONNS -d$DURATION"
wrk_run "$WORK/wrk-single.out" "$p1" "$CONNS" "$WORK/single.tsv"
wait "$WRK_PID"
single_rps=$(field "$WORK/wrk-single.out" rps)
single_p99=$(field "$WORK/wrk-single.out" p99_ms)
single_non2xx=$(field "$WORK/wrk-single.out" non2xx)
[[ -n $single_rps ]] || { cat "$WORK/wrk-single.out" >&2; die "no result from phase 1"; }
stop_pid "$single_pid"

# Phase 2: NODES nodes on one fresh database, CONNS split across them, wrk at once.
fresh_db
db2=$DB_URL
ports=()
for ((i = 1; i <= NODES; i++)); do
    start_node "node$i" "$db2"
    ports+=("$NODE_PORT")
done
conns_each=$(( CONNS / NODES ))
log "phase 2: $NODES nodes on one PostgreSQL, $NODES x wrk -c$conns_each -d$DURATION"
wrk_pids=()
for ((i = 1; i <= NODES; i++)); do
    wrk_run "$WORK/wrk-n$i.out" "${ports[$((i - 1))]}" "$conns_each" "$WORK/n$i.tsv"
    wrk_pids+=("$WRK_PID")
done
for pid in "${wrk_pids[@]}"; do wait "$pid"; done
multi_rps=0
multi_non2xx=0
multi_p99=0
for ((i = 1; i <= NODES; i++)); do
    r=$(field "$WORK/wrk-n$i.out" rps)
    [[ -n $r ]] || { cat "$WORK/wrk-n$i.out" >&2; die "no result from node $i"; }
    multi_rps=$(awk -v a="$multi_rps" -v b="$r" 'BEGIN { printf "%.1f", a + b }')
    multi_non2xx=$(( multi_non2xx + $(field "$WORK/wrk-n$i.out" non2xx) ))
    multi_p99=$(awk -v a="$multi_p99" -v b="$(field "$WORK/wrk-n$i.out" p99_ms)" 'BEGIN { print (b > a) ? b : a }')
done
stored=$(psql "$db2" -Atc "SELECT COUNT(*) FROM raw_events" 2>/dev/null || echo "?")

printf '\nsigned webhook ingest, one PostgreSQL, %s total connections, %s, run %s%s\n' \
    "$CONNS" "$DURATION" "$RUN_ID" "${ROLES:+, roles $ROLES}"
printf '%-22s %10s %9s %8s\n' setup 'req/s' 'p99 ms' non-2xx
printf '%-22s %10s %9s %8s\n' "1 node" "$single_rps" "$single_p99" "$single_non2xx"
printf '%-22s %10s %9s %8s\n' "$NODES nodes (summed)" "$multi_rps" "$multi_p99" "$multi_non2xx"
printf 'ratio %s nodes / 1 node: %s   (raw events stored by the %s nodes: %s)\n' "$NODES" \
    "$(awk -v a="$multi_rps" -v b="$single_rps" 'BEGIN { printf "%.2f", a / b }')" "$NODES" "$stored"
