#!/usr/bin/env bash
# What durability costs: Rush's three journal modes against Redis + Lua's three AOF modes, on
# the same seckill workload, with the same driver, in one run.
#
#   bash benches/durability_compare.sh            # full run (about 6 minutes)
#   QUICK=1 bash benches/durability_compare.sh    # smoke run (1 s a cell, 50 × 1 only)
#   CELLS="50 64" bash benches/durability_compare.sh
#
# The sides:
# - Rush `--durability sync` (a reply leaves once its journal entry is fdatasynced: one
#   write + fdatasync per shard per loop pass, group commit), `interval:1000` (replies at
#   once, the journal synced every second) and `none` (in memory);
# - Redis 7 with `appendonly yes` and `appendfsync always` (the AOF written and fsynced
#   before the replies of each event-loop iteration go out: Redis's group commit),
#   `everysec` (a background fsync every second), and `appendonly no` (in memory).
# Each side gets a fresh server with a fresh data directory on the same disk (mktemp -d), one
# core (Rush: one shard, pinned to core 0; Redis: taskset to core 0), and the driver on core
# 1 (`rush bench -t 1`).
#
# The workload is seckill-hot on the **success path**: one SKU with more units than the run
# sends, no per-user limit (`--per-user-limit 0`), 5% retries with the same key. Every new
# RESERVE makes a hold (Rush: a reservation slot, a request key, a journal entry; Redis: a
# DECRBY and a SET of the key in the Lua script, an AOF entry), so every request is a write
# that must be made durable. Rush's tables are sized for the run (a config file with 10 M
# reservations and request keys); Redis needs no sizing.
#
# For each (connections, pipeline) cell:
# - a closed-loop run per side for throughput, counting fsyncs: Rush from the journal
#   counters `rush serve` logs when it stops (its fdatasyncs are io_uring operations, not
#   system calls), Redis with `perf stat` on the fdatasync and fsync system calls of its
#   process (all threads) while the driver runs;
# - an open-loop run per side at one shared rate, half the slowest side's closed-loop
#   throughput in this cell, for latency from each request's intended send time.
# Every run ends with the bench's invariant checks (stock conserved, exactly once); a failed
# check stops the script.
#
# Results depend on the disk: fdatasync on this VM's virtual disk costs what the host makes it
# cost. Read the ratios of one run, not the absolute numbers.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${DURATION:-3s}
warmup=${WARMUP:-500ms}
cells=${CELLS:-"50 1|50 16|50 64"}
if [[ -n "${QUICK:-}" ]]; then
    duration=1s
    warmup=200ms
    cells=${CELLS:-"50 1"}
fi

for tool in redis-server perf; do
    if ! command -v "$tool" >/dev/null; then
        package=redis-server
        [[ $tool == perf ]] && package=linux-perf
        echo "== installing $package" >&2
        if [[ $(id -u) -eq 0 ]]; then
            apt-get install -y "$package" >/dev/null || { apt-get update >/dev/null && apt-get install -y "$package" >/dev/null; }
        else
            sudo apt-get install -y "$package" >/dev/null
        fi
    fi
done

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

cat >"$work/rush.toml" <<'EOF'
# Sized for a run of the success path: every RESERVE a live hold with its request key (at
# ~1.9 M/s in memory, 3.5 s of warm-up and run make ~6.5 M).
reservation_max = 10000000
request_key_max = 10000000
sku_max = 64
account_max = 1000
limit_entry_max = 1000
EOF
: >"$work/empty-sale.toml"

side_name() { # side
    case $1 in
        rush-sync) echo "Rush sync" ;;
        rush-interval) echo "Rush interval:1000" ;;
        rush-none) echo "Rush none" ;;
        redis-always) echo "Redis appendfsync always" ;;
        redis-everysec) echo "Redis appendfsync everysec" ;;
        redis-off) echo "Redis AOF off" ;;
    esac
}

# Starts the side's server; sets server_pid, target (the bench's address arguments), data.
start() { # side
    local side=$1 port
    port=$(free_port)
    data="$work/data-$side"
    rm -rf "$data"
    mkdir -p "$data"
    case $side in
        rush-*)
            local mode=${side#rush-} admin
            [[ $mode == interval ]] && mode=interval:1000
            admin=$(free_port)
            taskset -c 0,1 "$rush" serve --config "$work/rush.toml" --listen "127.0.0.1:$port" \
                --admin-listen "127.0.0.1:$admin" --metrics-listen 127.0.0.1:0 --shard-ports off --shards 1 \
                --sale "$work/empty-sale.toml" --data-dir "$data/rush" --durability "$mode" \
                >"$work/server.log" 2>&1 &
            server_pid=$!
            target=("127.0.0.1:$port" --admin "127.0.0.1:$admin")
            ;;
        redis-*)
            local aof=(--appendonly yes --appendfsync always)
            [[ $side == redis-everysec ]] && aof=(--appendonly yes --appendfsync everysec)
            [[ $side == redis-off ]] && aof=(--appendonly no)
            taskset -c 0 redis-server --port "$port" --bind 127.0.0.1 --save '' "${aof[@]}" \
                --dir "$data" --daemonize no --logfile "$work/server.log" &
            server_pid=$!
            target=("127.0.0.1:$port" --protocol resp)
            ;;
    esac
    for _ in $(seq 300); do
        case $side in
            rush-*) grep -q listening "$work/server.log" && return 0 ;;
            redis-*) redis-cli -p "$port" ping >/dev/null 2>&1 && return 0 ;;
        esac
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "$side did not start:" >&2
    cat "$work/server.log" >&2
    exit 1
}

# Stops the server; for Rush, reads its journal counters from the stop log into
# `journal_records` and `journal_syncs`.
stop() { # side
    kill -TERM "$server_pid"
    wait "$server_pid" 2>/dev/null || true
    server_pid=
    journal_records=0
    journal_syncs=0
    if [[ $1 == rush-* ]]; then
        local line
        line=$(grep 'rush: journal:' "$work/server.log" || true)
        if [[ $line =~ journal:\ ([0-9]+)\ records,\ ([0-9]+)\ writes ]]; then
            journal_records=${BASH_REMATCH[1]}
            journal_syncs=${BASH_REMATCH[2]}
        fi
    fi
}

seed=100
bench() { # side mode connections pipeline [rate] -> $work/<side>-<mode>-<c>-<p>.json
    local side=$1 mode=$2 connections=$3 pipeline=$4 rate=${5:-}
    seed=$((seed + 1))
    local load=(--closed)
    [[ $mode == open ]] && load=(-R "$rate")
    local json="$work/$side-$mode-$connections-$pipeline.json"
    taskset -c 1 "$rush" bench "${target[@]}" -w seckill-hot "${load[@]}" -c "$connections" \
        -P "$pipeline" -t 1 -d "$duration" --warmup "$warmup" --seed "$seed" \
        --stock 1000000000 --per-user-limit 0 --json "$json" >"$work/bench.log" 2>&1 \
        || { echo "bench against $side ($mode) failed:" >&2; cat "$work/bench.log" >&2; exit 1; }
    local passed
    passed=$(field "$json" "d['checks_passed']")
    [[ $passed == True ]] || { echo "invariant check failed against $side ($mode)" >&2; cat "$work/bench.log" >&2; exit 1; }
}

field() { # file python-expression-on-d
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"
}

sides=(rush-sync rush-interval rush-none redis-always redis-everysec redis-off)
echo "redis $(redis-server --version | awk '{print $3}'); rush $(git rev-parse --short HEAD); data on $(df --output=source "$work" | tail -1)" >&2

IFS='|' read -r -a cell_list <<<"$cells"
for cell in "${cell_list[@]}"; do
    read -r connections pipeline <<<"$cell"
    declare -A rps=() syncs_per_s=() per_sync=() ok_share=()
    for side in "${sides[@]}"; do
        start "$side"
        perf_pid=
        if [[ $side == redis-* ]]; then
            perf stat -x, -e syscalls:sys_enter_fdatasync,syscalls:sys_enter_fsync \
                -p "$server_pid" -o "$work/perf.csv" &
            perf_pid=$!
            sleep 0.2
        fi
        started=$(date +%s.%N)
        bench "$side" closed "$connections" "$pipeline"
        elapsed=$(python3 -c "import time; print(time.time() - $started)")
        json="$work/$side-closed-$connections-$pipeline.json"
        if [[ -n $perf_pid ]]; then
            kill -INT "$perf_pid"
            wait "$perf_pid" 2>/dev/null || true
            syncs=$(awk -F, '/sys_enter_f/ {sum += $1} END {print sum + 0}' "$work/perf.csv")
        fi
        stop "$side"
        [[ $side == rush-* ]] && syncs=$journal_syncs
        sent=$(field "$json" "d['completed'] + d['warmup_completed']")
        rps[$side]=$(field "$json" "round(d['throughput_rps'])")
        ok_share[$side]=$(field "$json" "'%.0f%%' % (100.0 * d['results'].get('OK', 0) / max(1, d['completed']))")
        if [[ $syncs -gt 0 ]]; then
            syncs_per_s[$side]=$(python3 -c "print(round($syncs / $elapsed))")
            per_sync[$side]=$(python3 -c "print('%.1f' % ($sent / $syncs))")
        else
            syncs_per_s[$side]=0
            per_sync[$side]="—"
        fi
        if [[ $side == rush-* && $journal_records -gt 0 && $syncs -gt 0 ]]; then
            per_sync[$side]="${per_sync[$side]} (journal: $(python3 -c "print('%.1f' % ($journal_records / $syncs))") records)"
        fi
    done
    slowest=${rps[${sides[0]}]}
    for side in "${sides[@]}"; do
        (( rps[$side] < slowest )) && slowest=${rps[$side]}
    done
    rate=$(( slowest / 2 ))
    declare -A latency=()
    for side in "${sides[@]}"; do
        start "$side"
        bench "$side" open "$connections" "$pipeline" "$rate"
        stop "$side"
        latency[$side]=$(field "$work/$side-open-$connections-$pipeline.json" \
            "'%.0f / %.0f / %.0f' % (d['latency_us']['p50'], d['latency_us']['p99'], d['latency_us']['p99.9'])")
    done
    echo
    echo "### $connections connections × pipeline $pipeline (open loop at $rate req/s for every side)"
    echo
    echo "| side | closed-loop req/s | OK share | fsyncs/s | requests per fsync | p50 / p99 / p99.9 µs at $rate req/s |"
    echo "|---|---:|---:|---:|---:|---:|"
    for side in "${sides[@]}"; do
        echo "| $(side_name "$side") | ${rps[$side]} | ${ok_share[$side]} | ${syncs_per_s[$side]} | ${per_sync[$side]} | ${latency[$side]} |"
    done
    ratio() { python3 -c "print('%.1f×' % ($1 / $2))"; }
    echo
    echo "Rush sync / Redis always: $(ratio "${rps[rush-sync]}" "${rps[redis-always]}") throughput;" \
        "Rush interval / Rush none: $(ratio "${rps[rush-interval]}" "${rps[rush-none]}");" \
        "Redis everysec / Redis off: $(ratio "${rps[redis-everysec]}" "${rps[redis-off]}")."
    unset rps syncs_per_s per_sync ok_share latency
done
echo
echo "Closed loop for throughput (fsyncs counted over the warm-up and the measured phase, with"
echo "requests per fsync over the same span); open loop at half the slowest side's throughput"
echo "for latency (from each request's intended send time). seckill-hot, success path: one SKU"
echo "of 10^9 units, no per-user limit, 5% retries with the same key; invariants checked after"
echo "every run."
