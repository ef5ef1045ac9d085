#!/usr/bin/env bash
# Run every fuzz target for a bounded time (CI). Needs the nightly toolchain and cargo-fuzz;
# installs cargo-fuzz (about 2 minutes from crates.io) when it is missing, within
# FUZZ_INSTALL_SECONDS. When either cannot be had, says so loudly and exits 0, or 1 when
# FUZZ_REQUIRED=1.
#
# usage: fuzz/ci.sh [SECONDS_PER_TARGET]   (default: $FUZZ_SECONDS or 20)
# env:   FUZZ_TARGETS="vhd gpt"  run only these
#
# Corpora: fuzz/corpus/TARGET, seeded by fuzz/seed.sh when empty, plus testdata/regress (read
# only). A crash, leak, timeout (10 s per input) or out-of-memory (2 GiB RSS; any single
# allocation over 1 GiB) fails the target; its input is in fuzz/artifacts/TARGET/ and the run
# goes on with the next target. Exit status 1 when any target failed.
set -uo pipefail
cd "$(dirname "$0")"
SECONDS_PER_TARGET=${1:-${FUZZ_SECONDS:-20}}
TARGETS=${FUZZ_TARGETS:-"vhd mbr gpt fs_probe fat journal info convert"}

unavailable() {
    echo "################################################################################"
    echo "## FUZZING SKIPPED: $1"
    echo "## The fuzz targets still ran on generated inputs in tests/fuzz_smoke.rs."
    echo "################################################################################"
    if [ "${FUZZ_REQUIRED:-0}" = 1 ]; then
        exit 1
    fi
    exit 0
}

if ! cargo +nightly --version >/dev/null 2>&1; then
    unavailable "no nightly toolchain (rustup toolchain install nightly)"
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "== cargo-fuzz missing: installing it (at most ${FUZZ_INSTALL_SECONDS:-600} s)"
    if ! timeout "${FUZZ_INSTALL_SECONDS:-600}" cargo install cargo-fuzz --locked; then
        unavailable "cargo-fuzz is not installed and could not be installed (cargo install cargo-fuzz --locked)"
    fi
fi

start=$(date +%s)
if [ -z "$(find corpus -type f 2>/dev/null | head -1)" ]; then
    echo "== seeding the corpora (fuzz/seed.sh)"
    bash seed.sh || echo "seed.sh failed: fuzzing from the regression inputs only"
fi
echo "== building the fuzz targets"
if ! cargo +nightly fuzz build -O; then
    echo "FUZZ BUILD FAILED"
    exit 1
fi
failed=""
for t in $TARGETS; do
    mkdir -p "corpus/$t" "artifacts/$t"
    echo "== fuzzing $t for ${SECONDS_PER_TARGET} s"
    extra=()
    case $t in
        journal | convert | fat) ;;
        *) extra=(../testdata/regress) ;;
    esac
    if ! cargo +nightly fuzz run -O "$t" "corpus/$t" "${extra[@]}" -- \
        -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
        -malloc_limit_mb=1024 -print_final_stats=1 2>"artifacts/$t/log.txt"; then
        echo "!! $t FAILED: see fuzz/artifacts/$t/ (last lines of the log follow)"
        tail -40 "artifacts/$t/log.txt"
        failed="$failed $t"
    fi
    grep -E "stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb" \
        "artifacts/$t/log.txt" | sed "s/^/   $t /"
done
echo "== fuzzing took $(($(date +%s) - start)) s"
if [ -n "$failed" ]; then
    echo "FUZZ FAILURES:$failed"
    exit 1
fi
echo "== every fuzz target ran ${SECONDS_PER_TARGET} s without a failure"
