#!/usr/bin/env bash
# Instructions per request through the real server loop, counted by callgrind (repeatable on a
# noisy VM, unlike time), with the top functions by inclusive cost.
#
#   bash benches/callgrind_profile.sh              # PING, RESERVE ok, RESERVE sold out
#   REQUESTS=50000 CASES="ping" bash benches/callgrind_profile.sh
#
# `rush serve` (one shard, epoll backend: valgrind does not model io_uring's shared rings,
# in memory, small tables so that the start under valgrind is quick) runs under
# `valgrind --tool=callgrind --instr-atstart=no`. For each case, collection is switched on
# (`callgrind_control -i on`), a closed-loop `rush bench` of REQUESTS requests (10
# connections × 16 in flight) runs, collection is switched off and the counts dumped; the
# instructions of the dump divided by the requests answered is the figure. Callgrind counts
# user-space instructions only: the kernel's share of each system call is not in it.
# Requires valgrind (Debian package `valgrind`).
set -euo pipefail
cd "$(dirname "$0")/.."

requests=${REQUESTS:-200000}
cases=${CASES:-"ping reserve-ok reserve-sold-out"}

if ! command -v valgrind >/dev/null; then
    echo "== installing valgrind" >&2
    if [[ $(id -u) -eq 0 ]]; then
        apt-get install -y valgrind >/dev/null || { apt-get update >/dev/null && apt-get install -y valgrind >/dev/null; }
    else
        sudo apt-get install -y valgrind >/dev/null
    fi
fi

cargo build --release --bin rush >&2
rush=target/release/rush

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

work=$(mktemp -d)
server_pid=
cleanup() {
    if [[ -n $server_pid ]]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    [[ -n "${KEEP:-}" ]] || rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/rush.toml" <<'EOF'
sku_max = 64
account_max = 1024
reservation_max = 2000000
request_key_max = 2000000
limit_entry_max = 1024
EOF
: >"$work/empty-sale.toml"

port=$(free_port)
admin=$(free_port)
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/callgrind.out.%p" \
    "$rush" serve --config "$work/rush.toml" --listen "127.0.0.1:$port" \
    --admin-listen "127.0.0.1:$admin" --shard-ports off --shards 1 --no-pin --io epoll \
    --durability none --metrics-listen none --sale "$work/empty-sale.toml" >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1200); do
    grep -q listening "$work/server.log" && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.25
done
grep -q listening "$work/server.log" || { cat "$work/server.log" >&2; exit 1; }

seed=900
echo
for case in $cases; do
    seed=$((seed + 1))
    case $case in
        ping) workload=(-w ping) ;;
        reserve-ok) workload=(-w seckill-hot --stock 1000000000 --per-user-limit 0 --retry-pct 0) ;;
        reserve-sold-out) workload=(-w seckill-hot --stock 1 --per-user-limit 0 --retry-pct 0) ;;
        *) echo "unknown case $case" >&2; exit 1 ;;
    esac
    callgrind_control -i on "$server_pid" >/dev/null 2>&1
    "$rush" bench "127.0.0.1:$port" --admin "127.0.0.1:$admin" "${workload[@]}" --closed \
        -c 10 -P 16 -t 1 -n "$requests" --seed "$seed" --drain-timeout 60s \
        --json "$work/bench.json" >"$work/bench.log" 2>&1 \
        || { echo "bench ($case) failed:" >&2; cat "$work/bench.log" >&2; exit 1; }
    callgrind_control -i off "$server_pid" >/dev/null 2>&1
    rm -f "$work"/callgrind.out.*.*
    callgrind_control -d "$case" "$server_pid" >/dev/null 2>&1
    # The server writes the dump when it next runs (it may be asleep in epoll_wait).
    dump=
    for _ in $(seq 240); do
        dump=$(find "$work" -name 'callgrind.out.*.*' -size +0 | head -1)
        [[ -n $dump ]] && break
        sleep 0.25
    done
    [[ -n $dump ]] || { echo "no callgrind dump for $case" >&2; exit 1; }
    sleep 0.5
    answered=$(python3 -c "import json; d=json.load(open('$work/bench.json')); print(d['completed'])")
    results=$(python3 -c "import json; d=json.load(open('$work/bench.json')); print(', '.join('%s %d' % kv for kv in sorted(d['results'].items())))")
    callgrind_annotate --inclusive=yes "$dump" >"$work/annotated.txt" 2>/dev/null
    total=$(awk '/PROGRAM TOTALS/ && !seen {gsub(",", "", $1); print $1; seen = 1}' "$work/annotated.txt")
    echo "### $case: $((total / answered)) instructions per request ($total over $answered requests: $results)"
    echo
    echo '```text'
    awk '/^-+$/ {n++} n >= 3' "$work/annotated.txt" | grep -v '^-' | grep -v '^$' \
        | sed -E 's/ \[[^]]*\]$//' | cut -c1-150 | sed -n '1,25p'
    echo '```'
    echo
done
