#!/usr/bin/env bash
# Run every fuzz target for a bounded time (called by .ci/run). Needs the nightly toolchain and
# cargo-fuzz (`rustup toolchain install nightly`, `cargo install cargo-fuzz --locked`); when
# either is missing it says so loudly and exits 0 (the targets still ran on generated inputs in
# tests/fuzz_smoke.rs), or 1 when FUZZ_REQUIRED=1.
#
# usage: fuzz/ci.sh [SECONDS_PER_TARGET]   (default: $FUZZ_SECONDS or 30)
# env:   FUZZ_TARGETS="vhd gpt"   run only these
#        FUZZ_BUDGET=480          seconds for the whole script, build included: the time per
#                                 target shrinks (never below 5 s) so that build + runs fit
#
# Inputs: fuzz/seeds/TARGET (committed, made by fuzz/seed.sh) and, for the disk-level targets,
# testdata/regress; new inputs go to fuzz/corpus/TARGET (not committed). A crash, a failed
# property, a timeout (10 s per input) or out-of-memory (2 GiB RSS, or any single allocation
# over 1 GiB) fails the target: libFuzzer saves the input in fuzz/artifacts/TARGET/ (kept by
# CI as the crash file; reproduce with `cargo +nightly fuzz run TARGET FILE`, then add it to
# testdata/regress with a test). The script exits 1 when any target failed.
set -uo pipefail
cd "$(dirname "$0")"
SECONDS_PER_TARGET=${1:-${FUZZ_SECONDS:-30}}
BUDGET=${FUZZ_BUDGET:-480}
TARGETS=${FUZZ_TARGETS:-"vhd mbr gpt fs_probe fat journal info convert bootfiles shrink grub ntfsfile regf_read regf_roundtrip bcd mounted vhd_dynamic vhdx qcow2"}

unavailable() {
    echo "################################################################################"
    echo "##"
    echo "## FUZZING SKIPPED: $1"
    echo "## The fuzz targets still ran on generated inputs in tests/fuzz_smoke.rs, but"
    echo "## libFuzzer did not explore them. Install: $2"
    echo "##"
    echo "################################################################################"
    if [ "${FUZZ_REQUIRED:-0}" = 1 ]; then
        exit 1
    fi
    exit 0
}

if ! cargo +nightly --version >/dev/null 2>&1; then
    unavailable "no nightly toolchain" "rustup toolchain install nightly"
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    unavailable "cargo-fuzz is not installed" "cargo install cargo-fuzz --locked"
fi

start=$(date +%s)
echo "== building the fuzz targets ($(cargo +nightly fuzz --version), $(cargo +nightly --version))"
if ! cargo +nightly fuzz build -O; then
    echo "!! FUZZ BUILD FAILED"
    exit 1
fi
built=$(($(date +%s) - start))
n=$(echo $TARGETS | wc -w)
fit=$(((BUDGET - built) / n))
if [ "$fit" -lt "$SECONDS_PER_TARGET" ]; then
    [ "$fit" -lt 5 ] && fit=5
    echo "== the build took ${built} s: ${fit} s per target to stay within ${BUDGET} s"
    SECONDS_PER_TARGET=$fit
fi
# Targets whose seeds are made here (from the committed test data, or small images made by
# qemu-img and mkntfs) instead of being committed: images of these formats are large.
generated_seeds() { # generated_seeds TARGET DIR
    case $1 in
        regf_read | regf_roundtrip | bcd | mounted)
            find ../testdata/windows-boot -name '*.BCD' -exec cp {} "$2/" \; ;;
        qcow2)
            qemu-img create -q -f qcow2 "$2/v3.qcow2" 16M &&
                qemu-io -c 'write -P 0x5a 1M 64k' "$2/v3.qcow2" >/dev/null &&
                qemu-img create -q -f qcow2 -o compat=0.10 "$2/v2.qcow2" 16M ;;
        vhd_dynamic)
            qemu-img create -q -f vpc "$2/dynamic.vhd" 16M ;;
        vhdx)
            qemu-img create -q -f vhdx -o block_size=1M "$2/dynamic.vhdx" 8M ;;
        ntfsfile)
            truncate -s 2M "$2/ntfs.img" && mkntfs -q -F -f "$2/ntfs.img" >/dev/null 2>&1 ;;
    esac
}
failed=""
for t in $TARGETS; do
    mkdir -p "corpus/$t" "artifacts/$t"
    dirs=("corpus/$t")
    if [ -d "seeds/$t" ]; then
        dirs+=("seeds/$t")
    elif [ -z "$(ls -A "corpus/$t")" ]; then
        generated_seeds "$t" "corpus/$t" || echo "   (could not make seeds for $t: starting from nothing)"
    fi
    case $t in
        journal | convert | fat | bootfiles | regf_read | regf_roundtrip | bcd | mounted | qcow2 | vhdx) ;;
        *) dirs+=(../testdata/regress) ;;
    esac
    # libFuzzer cuts inputs to 1 MiB unless told otherwise; the smallest volume mkntfs makes is
    # 2 MiB (it refuses 1 MiB: the backup boot sector leaves 1023 KiB), and a cut volume fails
    # the boot sector's size check before any file is read. So ntfsfile takes whole seeds. A
    # VHDX has 1 MiB-aligned regions (headers, log, BAT, metadata): qemu-img's smallest is
    # 4 MiB, and a cut one fails before its BAT or metadata is read; vhdx takes 8 MiB (a child
    # and its parent, as the harness reads chains).
    extra=()
    case $t in
        ntfsfile) extra=(-max_len=2097152) ;;
        vhdx) extra=(-max_len=8388608) ;;
    esac
    echo "== fuzzing $t for ${SECONDS_PER_TARGET} s"
    if ! cargo +nightly fuzz run -O "$t" "${dirs[@]}" -- "${extra[@]}" \
        -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
        -malloc_limit_mb=1024 -print_final_stats=1 >"artifacts/$t/log.txt" 2>&1; then
        echo "!! $t FAILED: the input is in fuzz/artifacts/$t/ (last lines of the log follow)"
        grep -v -E '^#[0-9]+' "artifacts/$t/log.txt" | tail -60
        failed="$failed $t"
    fi
    grep -E "stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb" \
        "artifacts/$t/log.txt" | sed "s/^/   $t /"
done
echo "== fuzzing took $(($(date +%s) - start)) s"
if [ -n "$failed" ]; then
    echo "!! FUZZ FAILURES:$failed"
    ls -l artifacts/*/crash-* artifacts/*/oom-* artifacts/*/timeout-* artifacts/*/leak-* 2>/dev/null
    exit 1
fi
echo "== every fuzz target ran ${SECONDS_PER_TARGET} s without a failure"
