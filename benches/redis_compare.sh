#!/usr/bin/env bash
# Rush against Redis + Lua on the same seckill workload, in one run, with one driver.
#
#   bash benches/redis_compare.sh            # full run (about 6 minutes)
#   QUICK=1 bash benches/redis_compare.sh    # smoke run (1 s a run, 50 × 1 only)
#   CELLS="50 64" ROWS="success" bash benches/redis_compare.sh
#
# What it does:
# - installs redis-server (Debian package) if it is missing;
# - starts its own Redis on a free loopback port with persistence off, and its own
#   `rush serve` on free ports, in memory (`--durability none`, as Redis runs without
#   persistence here; benches/durability_compare.sh compares the durable modes), 1 shard
#   by default (RUSH_SHARDS=N for more: Redis runs its commands on one thread, and this
#   2-core machine must also run the driver, so one core each is the like-for-like
#   setting: Rush's shard pinned to core 0, Redis on core 0 with taskset, the driver on
#   core 1); a fresh pair of servers for every row, so that no row inherits another's
#   tables; stops both by pid on exit;
# - runs `rush bench -w seckill-hot` against both: the same driver, the same connection
#   count and pipeline depth, latency from each request's intended send time. Against Redis
#   the driver speaks RESP and calls a Lua script doing what Rush does for a RESERVE: the
#   idempotency key check (a retry gets the stored outcome), the per-user limit, and the
#   stock check-and-decrement, atomically (tools/src/bench/resp.rs);
# - three rows per cell that take different paths through both servers: `success` (10^9
#   units, no per-user limit: every new RESERVE makes a hold), `sold-out` (1,000 units, sold
#   in the warm-up: refused for stock) and `limit` (10^9 units, 1,000 buyers with a limit of
#   one: each buys once, then is refused by the limit);
# - for each (connections, pipeline) cell: Rush's PING rate (the ceiling of its wire path),
#   then per row a closed-loop run for throughput and the server's CPU time per request
#   (user + system from /proc/PID/stat, all its threads, over the warm-up and the run,
#   divided by the requests answered), then an open-loop run at half the slower side's
#   closed-loop throughput for latency (both sides at the same offered rate, well below
#   either's saturation);
# - prints a markdown table with both sides and the ratios.
#
# Both servers share this 2-core machine with the driver; read the ratios, not the absolute
# numbers.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${DURATION:-3s}
warmup=${WARMUP:-1s}
cells=${CELLS:-"50 1|50 16|50 64"}
rows=${ROWS:-"success|sold-out|limit"}
if [[ -n "${QUICK:-}" ]]; then
    duration=1s
    warmup=200ms
    cells=${CELLS:-"50 1"}
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
redis_pid=
rush_pid=
stop_servers() {
    for pid in $redis_pid $rush_pid; do kill "$pid" 2>/dev/null || true; done
    for pid in $redis_pid $rush_pid; do wait "$pid" 2>/dev/null || true; done
    redis_pid=
    rush_pid=
}
cleanup() {
    stop_servers
    rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/rush.toml" <<'EOF'
# Sized for the success rows: every new RESERVE a live hold with its request key.
reservation_max = 8000000
request_key_max = 8000000
EOF

start_servers() {
    redis_port=$(free_port)
    taskset -c 0 redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
        --daemonize no --logfile "$work/redis.log" &
    redis_pid=$!
    rush_port=$(free_port)
    admin_port=$(free_port)
    "$rush" serve --config "$work/rush.toml" --listen "127.0.0.1:$rush_port" \
        --admin-listen "127.0.0.1:$admin_port" --metrics-listen 127.0.0.1:0 --shard-ports auto --shards "${RUSH_SHARDS:-1}" \
        --durability none >"$work/rush.log" 2>&1 &
    rush_pid=$!
    for _ in $(seq 300); do
        if redis-cli -p "$redis_port" ping >/dev/null 2>&1 && grep -q listening "$work/rush.log"; then break; fi
        sleep 0.1
    done
    grep -q listening "$work/rush.log" || { cat "$work/rush.log" >&2; exit 1; }
}

start_servers
echo "redis $(redis-server --version | awk '{print $3}'); rush $(git rev-parse --short HEAD) ($(grep backend "$work/rush.log" | sed 's/rush: //'))" >&2
stop_servers

field() { # file python-expression-on-d
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"
}

seed=1
bench() { # side mode connections pipeline row [rate] -> $work/<side>-<mode>-<c>-<p>-<row>.json
    local side=$1 mode=$2 connections=$3 pipeline=$4 row=$5 rate=${6:-}
    seed=$((seed + 1))
    local load=(--closed)
    [[ $mode == open ]] && load=(-R "$rate")
    local target=(127.0.0.1:$rush_port --admin 127.0.0.1:$admin_port)
    [[ $side == redis ]] && target=(127.0.0.1:$redis_port --protocol resp)
    local workload=(-w seckill-hot)
    case $row in
        success) workload+=(--stock 1000000000 --per-user-limit 0) ;;
        sold-out) workload+=(--stock 1000 --per-user-limit 0) ;;
        limit) workload+=(--stock 1000000000 --buyers 1000) ;;
        ping) workload=(-w ping) ;;
    esac
    local json="$work/$side-$mode-$connections-$pipeline-$row.json"
    taskset -c 1 "$rush" bench "${target[@]}" "${workload[@]}" "${load[@]}" -c "$connections" \
        -P "$pipeline" -t 1 -d "$duration" --warmup "$warmup" --seed "$seed" --json "$json" \
        >"$work/$side-$mode.log" 2>&1 \
        || { echo "bench against $side failed:" >&2; cat "$work/$side-$mode.log" >&2; exit 1; }
    local passed
    passed=$(field "$json" "d['checks_passed']")
    # A PING run has nothing to check (None); every RESERVE run must pass.
    [[ $passed == True || ($row == ping && $passed == None) ]] || { echo "invariant check failed against $side ($mode, $row)" >&2; cat "$work/$side-$mode.log" >&2; exit 1; }
}

# User + system CPU time of a process (all its threads, io_uring workers included), in µs.
cpu_us() { # pid
    python3 -c "
import os, sys
fields = open('/proc/%s/stat' % sys.argv[1]).read().rsplit(')', 1)[1].split()
print((int(fields[11]) + int(fields[12])) * 1_000_000 // os.sysconf('SC_CLK_TCK'))" "$1"
}

# A closed-loop run that also measures the server's CPU time per request answered (warm-up
# included: the CPU clock runs through it); sets `rps` and `cpu_per_request_us`.
closed() { # side connections pipeline row
    local side=$1 pid=$rush_pid before after json
    [[ $side == redis ]] && pid=$redis_pid
    before=$(cpu_us "$pid")
    bench "$side" closed "$2" "$3" "$4"
    after=$(cpu_us "$pid")
    json="$work/$side-closed-$2-$3-$4.json"
    rps=$(field "$json" "round(d['throughput_rps'])")
    cpu_per_request_us=$(field "$json" "'%.2f' % (($after - $before) / max(1, d['completed'] + d['warmup_completed']))")
}

# What a run's RESERVEs were answered, in a few words: "97% OK", or the commonest code.
answered() { # json
    field "$1" "(lambda r, n: '%.0f%% OK' % (100.0 * r.get('OK', 0) / max(1, n)) if r.get('OK', 0) * 2 > n else '%.0f%% %s' % (100.0 * max(r.values()) / max(1, n), max(r, key=r.get)))(d['results'], d['completed'])"
}

latency() { # json
    field "$1" "'%.0f / %.0f / %.0f' % (d['latency_us']['p50'], d['latency_us']['p99'], d['latency_us']['p99.9'])"
}

IFS='|' read -r -a cell_list <<<"$cells"
IFS='|' read -r -a row_list <<<"$rows"
echo
echo "| connections × pipeline | row: Rush answered (Redis answered) | Redis+Lua req/s | Rush req/s | ratio | Rush / own PING | Redis CPU µs/req | Rush CPU µs/req | Redis / Rush CPU | offered req/s | Redis p50 / p99 / p99.9 µs | Rush p50 / p99 / p99.9 µs | p99 ratio |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for cell in "${cell_list[@]}"; do
    read -r connections pipeline <<<"$cell"
    # Rush's own PING rate in the same sitting: the ceiling of its wire path.
    start_servers
    closed rush "$connections" "$pipeline" ping
    ping_rps=$rps
    ping_cpu=$cpu_per_request_us
    stop_servers
    for row in "${row_list[@]}"; do
        start_servers
        closed redis "$connections" "$pipeline" "$row"
        redis_rps=$rps
        redis_cpu=$cpu_per_request_us
        closed rush "$connections" "$pipeline" "$row"
        rush_rps=$rps
        rush_cpu=$cpu_per_request_us
        what="$row: $(answered "$work/rush-closed-$connections-$pipeline-$row.json") ($(answered "$work/redis-closed-$connections-$pipeline-$row.json"))"
        slower=$(( redis_rps < rush_rps ? redis_rps : rush_rps ))
        rate=$(( slower / 2 ))
        bench redis open "$connections" "$pipeline" "$row" "$rate"
        bench rush open "$connections" "$pipeline" "$row" "$rate"
        stop_servers
        redis_p99=$(field "$work/redis-open-$connections-$pipeline-$row.json" "d['latency_us']['p99']")
        rush_p99=$(field "$work/rush-open-$connections-$pipeline-$row.json" "d['latency_us']['p99']")
        ratio=$(python3 -c "print('%.1f×' % ($rush_rps / $redis_rps))")
        of_ping=$(python3 -c "print('%.2f' % ($rush_rps / $ping_rps))")
        cpu_ratio=$(python3 -c "print('%.1f×' % ($redis_cpu / $rush_cpu)) if $rush_cpu > 0 else print('—')")
        p99_ratio=$(python3 -c "print('%.1f× lower' % ($redis_p99 / $rush_p99)) if $rush_p99 <= $redis_p99 else print('%.1f× higher' % ($rush_p99 / $redis_p99))")
        echo "| $connections × $pipeline | $what | $redis_rps | $rush_rps | $ratio | $of_ping | $redis_cpu | $rush_cpu | $cpu_ratio | $rate | $(latency "$work/redis-open-$connections-$pipeline-$row.json") | $(latency "$work/rush-open-$connections-$pipeline-$row.json") | $p99_ratio |"
    done
    echo "| $connections × $pipeline | Rush PING | | $ping_rps | | 1.00 | | $ping_cpu | | | | | |"
done
echo
echo "Closed loop for throughput and the servers' CPU time (user + system, from /proc, over the"
echo "warm-up and the run) per request answered; open loop at half the slower side's throughput"
echo "for latency (from each request's intended send time). Rows: success = one SKU of 10^9"
echo "units, no per-user limit (every new RESERVE makes a hold); sold-out = 1,000 units, no limit"
echo "(sold out in the warm-up); limit = 10^9 units, 1,000 buyers with a limit of one (each buys"
echo "once, then is refused). 5% retries with the same key; invariants checked after every run."
