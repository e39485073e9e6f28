#!/usr/bin/env bash
# io_uring against epoll: the server's CPU time per request at 50, 200 and 1,000
# connections, in one run, both backends alternating.
#
#   bash benches/backend_compare.sh             # full run (about 4 minutes)
#   QUICK=1 bash benches/backend_compare.sh     # smoke run
#   CELLS="1000 1" RUNS=5 bash benches/backend_compare.sh
#
# For each (connections, pipeline) cell and each of RUNS rounds, a fresh `rush serve
# --io io_uring` and a fresh `rush serve --io epoll` (one shard pinned to core 0, in memory)
# take a closed-loop `rush bench` (one driver thread on core 1) of the seckill-hot workload
# sold out (1,000 units, sold in the warm-up, so nearly every RESERVE is a SOLD_OUT refusal:
# the engine's part is ~12 ns and the rest is the wire path the backends differ in). The
# server's CPU time (user + system from /proc/PID/stat, every thread, io_uring workers
# included) over the warm-up and the run, divided by the requests answered, is the figure;
# the table shows each round's figure, the median, and the ratio of the medians.
#
# Unpipelined throughput on this machine is bound by the driver (one thread doing a send and
# a receive per request), so compare CPU per request, not requests per second.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${DURATION:-3s}
warmup=${WARMUP:-1s}
cells=${CELLS:-"50 1|200 1|1000 1|50 16"}
runs=${RUNS:-3}
if [[ -n "${QUICK:-}" ]]; then
    duration=1s
    warmup=200ms
    cells=${CELLS:-"50 1"}
    runs=${RUNS:-1}
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
    rm -rf "$work"
}
trap cleanup EXIT

cpu_us() { # pid
    python3 -c "
import os, sys
fields = open('/proc/%s/stat' % sys.argv[1]).read().rsplit(')', 1)[1].split()
print((int(fields[11]) + int(fields[12])) * 1_000_000 // os.sysconf('SC_CLK_TCK'))" "$1"
}

field() { # file python-expression-on-d
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"
}

seed=500
# One run: sets `cpu` (µs per request) and `rps`.
run() { # backend connections pipeline
    local backend=$1 connections=$2 pipeline=$3 port admin before after json
    port=$(free_port)
    admin=$(free_port)
    "$rush" serve --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" \
        --shard-ports off --shards 1 --io "$backend" --durability none --metrics-listen none \
        >"$work/server.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 300); do
        grep -q listening "$work/server.log" && break
        sleep 0.1
    done
    grep -q "backend $backend" "$work/server.log" || { cat "$work/server.log" >&2; exit 1; }
    seed=$((seed + 1))
    json="$work/bench.json"
    before=$(cpu_us "$server_pid")
    taskset -c 1 "$rush" bench "127.0.0.1:$port" --admin "127.0.0.1:$admin" -w seckill-hot \
        --stock 1000 --closed -c "$connections" -P "$pipeline" -t 1 -d "$duration" \
        --warmup "$warmup" --seed "$seed" --json "$json" >"$work/bench.log" 2>&1 \
        || { echo "bench against $backend failed:" >&2; cat "$work/bench.log" >&2; exit 1; }
    after=$(cpu_us "$server_pid")
    kill -TERM "$server_pid"
    wait "$server_pid" 2>/dev/null || true
    server_pid=
    [[ $(field "$json" "d['checks_passed']") == True ]] || { echo "invariant check failed ($backend)" >&2; cat "$work/bench.log" >&2; exit 1; }
    cpu=$(field "$json" "'%.2f' % (($after - $before) / max(1, d['completed'] + d['warmup_completed']))")
    rps=$(field "$json" "round(d['throughput_rps'])")
}

median() { # values...
    python3 -c "import statistics, sys; print('%.2f' % statistics.median(float(v) for v in sys.argv[1:]))" "$@"
}

echo
echo "| connections × pipeline | io_uring CPU µs/req (runs) | epoll CPU µs/req (runs) | io_uring median | epoll median | epoll / io_uring | io_uring req/s | epoll req/s |"
echo "|---|---|---|---:|---:|---:|---:|---:|"
IFS='|' read -r -a cell_list <<<"$cells"
for cell in "${cell_list[@]}"; do
    read -r connections pipeline <<<"$cell"
    uring=()
    epoll=()
    uring_rps=()
    epoll_rps=()
    for _ in $(seq "$runs"); do
        run io_uring "$connections" "$pipeline"
        uring+=("$cpu")
        uring_rps+=("$rps")
        run epoll "$connections" "$pipeline"
        epoll+=("$cpu")
        epoll_rps+=("$rps")
    done
    uring_median=$(median "${uring[@]}")
    epoll_median=$(median "${epoll[@]}")
    ratio=$(python3 -c "print('%.2f' % ($epoll_median / $uring_median))")
    echo "| $connections × $pipeline | ${uring[*]} | ${epoll[*]} | $uring_median | $epoll_median | $ratio | $(median "${uring_rps[@]}" | cut -d. -f1) | $(median "${epoll_rps[@]}" | cut -d. -f1) |"
done
echo
echo "Server CPU time (user + system, /proc) per request answered, closed loop, one shard, one"
echo "driver thread; seckill-hot sold out (1,000 units). Each cell: $runs rounds, io_uring and"
echo "epoll alternating, a fresh server each run."
