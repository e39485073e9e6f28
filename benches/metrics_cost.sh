#!/bin/bash
# The cost of the metrics on seckill throughput: a rush binary without metrics (OLD, e.g.
# the commit before them) against one with them (NEW), alternately, in the same run. NEW's
# exporter is scraped every second (curl), as Prometheus would. One shard pinned to core 0,
# the driver (NEW's `rush bench`) on core 1, in memory (`--durability none`: the journal is
# not what is measured). Prints one line per 3 s run: binary, workload, req/s, p99 µs,
# errors. BENCHMARKS.md, "Cost of the metrics".
#
#   benches/metrics_cost.sh OLD_RUSH NEW_RUSH [ROUNDS]
set -euo pipefail
old=$(realpath "$1") new=$(realpath "$2") rounds=${3:-3}
work=$(mktemp -d)
trap 'jobs -p | xargs -r kill 2>/dev/null; rm -rf "$work"' EXIT
cd "$work"
run() { # label binary extra-server-args workload...
    local label=$1 bin=$2 extra=$3
    shift 3
    # shellcheck disable=SC2086 # $extra is empty or two words
    taskset -c 0 "$bin" serve --listen 127.0.0.1:7400 --admin-listen 127.0.0.1:7401 \
        --shard-ports off --shards 1 --durability none $extra >server.log 2>&1 &
    local pid=$! scraper=
    rm -f out.json
    # Start-up allocates and touches every table (about 250 MiB): up to 30 s on a busy VM.
    for _ in $(seq 300); do grep -q listening server.log 2>/dev/null && break; sleep 0.1; done
    if [[ -n $extra ]]; then
        (while true; do curl -s -o /dev/null http://127.0.0.1:7402/metrics; sleep 1; done) &
        scraper=$!
    fi
    taskset -c 1 "$new" bench 127.0.0.1:7400 --admin 127.0.0.1:7401 "$@" --json out.json >bench.log 2>&1 || cat bench.log server.log >&2
    if [[ -n $scraper ]]; then kill "$scraper"; fi
    kill -TERM "$pid"
    wait "$pid" || true
    python3 -c "import json; d = json.load(open('out.json')); print('$label', '$*', round(d['throughput_rps']), d['latency_us']['p99'], len(d['errors']))"
}
for _ in $(seq "$rounds"); do
    for workload in "--closed -w ping -c 8 -P 64 -d 3s" \
        "--closed -w seckill-hot --stock 100000 -c 8 -P 64 -d 3s"; do
        # shellcheck disable=SC2086 # the workload is several words
        run old "$old" "" $workload
        # shellcheck disable=SC2086
        run new "$new" "--metrics-listen 127.0.0.1:7402" $workload
    done
done
