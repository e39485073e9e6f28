#!/usr/bin/env bash
# Pipelined RESERVE throughput of the Go client against the Rust load driver (`rush bench`),
# on the same kind of server, with the same workload shape and the same connections x
# requests in flight, alternately, ROUNDS times. Each measurement gets a fresh server
# (`rush serve --shards 1`, its shard pinned to core 0) so that neither inherits the other's
# tables; the client, Rust or Go, runs on core 1 alone (taskset; GOMAXPROCS=1 for Go).
#
#   bash net/clients/go/bench.sh                      # 1 connection x 64 in flight, 5 s, 2 rounds
#   CONNS=8 INFLIGHT=64 bash net/clients/go/bench.sh
#
# Needs target/release/rush (cargo build --release --bin rush) or RUSH_BIN, and go.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(cd ../../.. && pwd)
RUSH=${RUSH_BIN:-$ROOT/target/release/rush}
CONNS=${CONNS:-1}
INFLIGHT=${INFLIGHT:-64}
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-2}
STOCK=100000
CLIENT_CORE=${CLIENT_CORE:-1}

work=$(mktemp -d)
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

go test -c -o "$work/rush.test" .

# Starts a fresh server on free ports; sets PUBLIC and ADMIN.
start_server() {
    "$RUSH" serve --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --metrics-listen none --shard-ports off --shards 1 \
        2>"$work/serve.log" &
    server_pid=$!
    for _ in $(seq 1 600); do
        line=$(grep -m1 '^rush: listening on' "$work/serve.log" || true)
        if [ -n "$line" ]; then
            PUBLIC=$(sed -E 's/^rush: listening on ([^ ]+) \(public\).*/\1/' <<<"$line")
            ADMIN=$(sed -E 's/.*, ([^ ]+) \(admin\).*/\1/' <<<"$line")
            return
        fi
        sleep 0.1
    done
    echo "rush serve did not start:" >&2
    cat "$work/serve.log" >&2
    exit 1
}

stop_server() {
    kill -TERM "$server_pid"
    wait "$server_pid" || true
    server_pid=
}

echo "== $CONNS connection(s) x $INFLIGHT in flight, closed loop, ${DURATION} s, seckill-hot shape ($STOCK units, 100,000 buyers)"
echo "   throughput, and the client's own CPU time (user + system) per request"
for round in $(seq 1 "$ROUNDS"); do
    start_server
    /usr/bin/time -f '%U %S' -o "$work/rust.time" taskset -c "$CLIENT_CORE" "$RUSH" bench "$PUBLIC" \
        --admin "$ADMIN" --closed -w seckill-hot --stock "$STOCK" -c "$CONNS" -P "$INFLIGHT" \
        -d "${DURATION}s" >"$work/rust.out" 2>&1
    stop_server
    rust_rate=$(sed -nE 's/^Requests: ([0-9]+) sent.* ([0-9.]+) req\/s$/\2/p' "$work/rust.out")
    rust_count=$(sed -nE 's/^Requests: ([0-9]+) sent.*/\1/p' "$work/rust.out")
    rust_cpu=$(awk -v n="$rust_count" '{ printf "%.0f", ($1 + $2) * 1e9 / n }' "$work/rust.time")

    start_server
    GOMAXPROCS=1 RUSH_BIN="$RUSH" RUSH_BENCH_ADDR="$PUBLIC" RUSH_BENCH_ADMIN="$ADMIN" \
        RUSH_BENCH_CONNS="$CONNS" RUSH_BENCH_INFLIGHT="$INFLIGHT" RUSH_BENCH_STOCK="$STOCK" \
        taskset -c "$CLIENT_CORE" "$work/rush.test" -test.run '^$' -test.bench PipelineReserve \
        -test.benchtime "${DURATION}s" >"$work/go.out" 2>&1
    stop_server
    go_rate=$(sed -nE 's/.*[[:space:]]([0-9.]+) req\/s.*/\1/p' "$work/go.out")
    go_cpu=$(sed -nE 's/.*[[:space:]]([0-9.]+) client-cpu-ns\/op.*/\1/p' "$work/go.out")
    if [ -z "$rust_rate" ] || [ -z "$go_rate" ]; then
        cat "$work/rust.out" "$work/go.out" >&2
        exit 1
    fi

    awk -v r="$round" -v rr="$rust_rate" -v rc="$rust_cpu" -v gr="$go_rate" -v gc="$go_cpu" 'BEGIN {
        printf "round %s: rush bench %.0f req/s, %.0f ns CPU/req | Go Pipeline %.0f req/s, %.0f ns CPU/req | Go/Rust: throughput %.2f, CPU per request %.2f\n",
            r, rr, rc, gr, gc, gr / rr, gc / rc }'
done
