#!/usr/bin/env bash
# Rush against Redis + Lua on the same seckill workload, in one run, with one driver.
#
#   bash benches/redis_compare.sh            # full run (about 1 minute)
#   QUICK=1 bash benches/redis_compare.sh    # smoke run (a few seconds per cell)
#
# What it does:
# - installs redis-server (Debian package) if it is missing;
# - starts its own Redis on a free loopback port with persistence off, and its own
#   `rush serve` on free ports, in memory (`--durability none`, as Redis runs without
#   persistence here; benches/durability_compare.sh compares the durable modes), 1 shard
#   by default (RUSH_SHARDS=N for more: Redis runs its commands on one thread, and this
#   2-core machine must also run the driver, so one core each is the like-for-like
#   setting); stops both by pid on exit;
# - runs `rush bench -w seckill-hot` against both: the same driver, the same connection
#   count and pipeline depth, latency from each request's intended send time. Against Redis
#   the driver speaks RESP and calls a Lua script doing what Rush does for a RESERVE: the
#   idempotency key check (a retry gets the stored outcome), the per-user limit, and the
#   stock check-and-decrement, atomically (tools/src/bench/resp.rs);
# - for each (connections, pipeline) cell: a closed-loop run for throughput, then an open-loop
#   run at half the slower side's closed-loop throughput for latency (both sides at the same
#   offered rate, well below either's saturation);
# - prints a markdown table with both sides and the ratios.
#
# Both servers share this 2-core machine with the driver; read the ratios, not the absolute
# numbers.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${DURATION:-5s}
warmup=${WARMUP:-1s}
if [[ -n "${QUICK:-}" ]]; then
    duration=1s
    warmup=200ms
fi

if ! command -v redis-server >/dev/null; then
    echo "== installing redis-server" >&2
    if [[ $(id -u) -eq 0 ]]; then
        apt-get install -y redis-server >/dev/null || { apt-get update >/dev/null && apt-get install -y redis-server >/dev/null; }
    else
        sudo apt-get install -y redis-server >/dev/null
    fi
fi

cargo build --release --bin rush >&2
rush=target/release/rush

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize no --logfile "$work/redis.log" &
pids+=($!)

rush_port=$(free_port)
admin_port=$(free_port)
"$rush" serve --listen "127.0.0.1:$rush_port" --admin-listen "127.0.0.1:$admin_port" \
    --shard-ports auto --shards "${RUSH_SHARDS:-1}" --durability none >"$work/rush.log" 2>&1 &
pids+=($!)

for _ in $(seq 100); do
    if redis-cli -p "$redis_port" ping >/dev/null 2>&1 && grep -q listening "$work/rush.log"; then break; fi
    sleep 0.1
done
grep -q listening "$work/rush.log" || { cat "$work/rush.log" >&2; exit 1; }
echo "redis $(redis-server --version | awk '{print $3}') on $redis_port; rush on $rush_port ($(grep backend "$work/rush.log" | sed 's/rush: //'))" >&2

seed=1
bench() { # side mode connections pipeline [rate]
    local side=$1 mode=$2 connections=$3 pipeline=$4 rate=${5:-}
    seed=$((seed + 1))
    local load=(--closed)
    [[ $mode == open ]] && load=(-R "$rate")
    local target=(127.0.0.1:$rush_port --admin 127.0.0.1:$admin_port)
    [[ $side == redis ]] && target=(127.0.0.1:$redis_port --protocol resp)
    "$rush" bench "${target[@]}" -w seckill-hot "${load[@]}" -c "$connections" -P "$pipeline" \
        -t 1 -d "$duration" --warmup "$warmup" --seed "$seed" --stock 100000 \
        --json "$work/$side-$mode-$connections-$pipeline.json" >"$work/$side-$mode.log" 2>&1 \
        || { echo "bench against $side failed:" >&2; cat "$work/$side-$mode.log" >&2; exit 1; }
}

field() { # file python-expression-on-d
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"
}

echo
echo "| connections × pipeline | Redis+Lua req/s | Rush req/s | ratio | offered req/s | Redis p50 / p99 / p99.9 µs | Rush p50 / p99 / p99.9 µs | p99 ratio |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for cell in "50 1" "50 16"; do
    read -r connections pipeline <<<"$cell"
    bench redis closed "$connections" "$pipeline"
    bench rush closed "$connections" "$pipeline"
    redis_rps=$(field "$work/redis-closed-$connections-$pipeline.json" "round(d['throughput_rps'])")
    rush_rps=$(field "$work/rush-closed-$connections-$pipeline.json" "round(d['throughput_rps'])")
    slower=$(( redis_rps < rush_rps ? redis_rps : rush_rps ))
    rate=$(( slower / 2 ))
    bench redis open "$connections" "$pipeline" "$rate"
    bench rush open "$connections" "$pipeline" "$rate"
    latency() { field "$1" "'%.0f / %.0f / %.0f' % (d['latency_us']['p50'], d['latency_us']['p99'], d['latency_us']['p99.9'])"; }
    redis_lat=$(latency "$work/redis-open-$connections-$pipeline.json")
    rush_lat=$(latency "$work/rush-open-$connections-$pipeline.json")
    redis_p99=$(field "$work/redis-open-$connections-$pipeline.json" "d['latency_us']['p99']")
    rush_p99=$(field "$work/rush-open-$connections-$pipeline.json" "d['latency_us']['p99']")
    ratio=$(python3 -c "print('%.1f×' % ($rush_rps / $redis_rps))")
    p99_ratio=$(python3 -c "print('%.1f× lower' % ($redis_p99 / $rush_p99)) if $rush_p99 <= $redis_p99 else print('%.1f× higher' % ($rush_p99 / $redis_p99))")
    for side in redis rush; do
        for mode in closed open; do
            passed=$(field "$work/$side-$mode-$connections-$pipeline.json" "d['checks_passed']")
            [[ $passed == True ]] || { echo "invariant check failed against $side ($mode)" >&2; cat "$work/$side-$mode.log" >&2; exit 1; }
        done
    done
    echo "| $connections × $pipeline | $redis_rps | $rush_rps | $ratio | $rate | $redis_lat | $rush_lat | $p99_ratio |"
done
echo
echo "Closed loop for throughput; open loop at half the slower side's throughput for latency"
echo "(from each request's intended send time). seckill-hot: one SKU of 100,000 units, 100,000"
echo "buyers, per-user limit 1, 5% retries with the same key; invariants checked after every run."
