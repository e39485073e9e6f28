#!/usr/bin/env bash
# Smoke run of the fuzz targets (tests/fuzz, docs/TESTING.md "Fuzzing"): builds them with
# cargo-fuzz (installed when missing) and runs each for RUSH_FUZZ_SECONDS seconds (default
# 20), starting from its committed seeds (seeds/TARGET) in a fresh temporary corpus, so a
# run takes the same time wherever it runs (the corpus of longer campaigns, corpus/TARGET,
# is theirs: see docs/TESTING.md). Fails on any crash (a panic: a failed assertion or a
# bug), on an input slower than 10 s (a hang), and on a target missing from the list below.
#
#   bash tests/fuzz/smoke.sh                          # what CI runs (.ci/run)
#   RUSH_FUZZ_SECONDS=600 bash tests/fuzz/smoke.sh    # a longer run of each target
#   RUSH_FUZZ_SANITIZER=none bash tests/fuzz/smoke.sh # without AddressSanitizer
#
# AddressSanitizer (the default) needs a nightly rustc's -Zsanitizer; on a stable toolchain
# RUSTC_BOOTSTRAP=1 unlocks it (set here for the fuzz build only).
set -euo pipefail
cd "$(dirname "$0")/../.."

# One line per target: a target is src/bin/TARGET.rs plus its line here.
targets=(
    request_decoder
    response_decoder
    sale_file
    config_file
    capture_reader
    pcap_import
    journal_reader
    snapshot_reader
)

seconds="${RUSH_FUZZ_SECONDS:-20}"
sanitizer="${RUSH_FUZZ_SANITIZER:-address}"
fuzz_dir=tests/fuzz

for file in "$fuzz_dir"/src/bin/*.rs; do
    name="$(basename "$file" .rs)"
    if [[ " ${targets[*]} " != *" $name "* ]]; then
        echo "smoke.sh: $file is a fuzz target missing from the list in tests/fuzz/smoke.sh"
        exit 1
    fi
done

if ! cargo fuzz --version >/dev/null 2>&1; then
    # About 2 minutes with one build job (CARGO_BUILD_JOBS=1) on a 2-core machine.
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
cargo fuzz --version

if [ "$sanitizer" != none ]; then
    export RUSTC_BOOTSTRAP=1
fi
fuzz=(cargo fuzz run --fuzz-dir "$fuzz_dir" --sanitizer "$sanitizer")

echo "== building the fuzz targets (sanitizer: $sanitizer)"
cargo fuzz build --fuzz-dir "$fuzz_dir" --sanitizer "$sanitizer"

log="$(mktemp)"
corpus="$(mktemp -d)"
trap 'rm -rf "$log" "$corpus"' EXIT
start=$SECONDS
for target in "${targets[@]}"; do
    echo "== fuzzing $target for ${seconds} s"
    mkdir "$corpus/$target"
    # libFuzzer exits non-zero on a crash, a timeout or running out of memory; the input is
    # kept in tests/fuzz/artifacts/TARGET/ (replay it: cargo fuzz run TARGET FILE).
    status=0
    "${fuzz[@]}" "$target" "$corpus/$target" "$fuzz_dir/seeds/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1 || status=$?
    pattern='^#[0-9]+[[:space:]]+(INITED|DONE)|^stat::(number_of_executed_units|average_exec_per_sec)'
    grep -E "$pattern" "$log" || true
    if [ "$status" -ne 0 ]; then
        tail -n 60 "$log"
        echo "smoke.sh: fuzz target $target failed (exit status $status)"
        exit "$status"
    fi
done
echo "== fuzz smoke run: ${#targets[@]} targets, $((SECONDS - start)) s of fuzzing"
