#!/usr/bin/env bash
# Builds every fuzz target and runs each for SECONDS (default 20), one after the other.
#   bash fuzz/run.sh [SECONDS]
# Exits non-zero if a target crashes (panics, fails an assertion, or trips AddressSanitizer),
# after running the others; the crashing input is kept in fuzz/artifacts/<target>/ and the
# command to replay it is printed.
#
# The seeds in fuzz/corpus/<target>/ are only read; what the fuzzer learns is kept in
# fuzz/work/corpus/<target>/ (ignored by git), so later runs start from there.
#
# Only a stable toolchain is available here: cargo-fuzz's sanitizer flags (-Zsanitizer=...)
# are nightly-only, so RUSTC_BOOTSTRAP=1 lets stable rustc accept them. Set
# FUZZ_SANITIZER=none to build without AddressSanitizer (faster, and needs no unstable
# flag; coverage instrumentation is stable).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
secs="${1:-20}"
if ! [[ "$secs" =~ ^[0-9]+$ ]] || [[ "$secs" -eq 0 ]]; then
    echo "usage: $0 [SECONDS]   (seconds per target, default 20)" >&2
    exit 2
fi
if ! command -v cargo-fuzz >/dev/null; then
    echo "cargo-fuzz is not installed: cargo install cargo-fuzz --locked" >&2
    exit 2
fi

export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
sanitizer="${FUZZ_SANITIZER:-address}"
# Optimised, with debug assertions and overflow checks (-a) so arithmetic bugs panic.
build_flags=(-O -a --sanitizer "$sanitizer")

mapfile -t targets < <(cargo fuzz list)
if [[ ${#targets[@]} -eq 0 ]]; then
    echo "no fuzz targets found" >&2
    exit 2
fi

t0=$(date +%s)
cargo fuzz build "${build_flags[@]}"
build_secs=$(($(date +%s) - t0))
echo "fuzz: built ${#targets[@]} targets in ${build_secs}s (sanitizer: $sanitizer)"

# Run the binaries just built (as `cargo fuzz run` would, without its rebuild check, so a
# source edited meanwhile cannot change what is being fuzzed halfway through).
triple=$(rustc -vV | sed -n 's/^host: //p')
bin_dir="target/$triple/release"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_odr_violation=0}"

mkdir -p work/logs
failed=()
results=()
for t in "${targets[@]}"; do
    mkdir -p "work/corpus/$t" "corpus/$t" "artifacts/$t"
    log="work/logs/$t.log"
    echo
    echo "==> fuzz $t for ${secs}s"
    rc=0
    "$bin_dir/$t" -artifact_prefix="artifacts/$t/" -max_total_time="$secs" -timeout=10 \
        -print_final_stats=1 "work/corpus/$t" "corpus/$t" 2>&1 | tee "$log" || rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
    if [[ $rc -ne 0 ]]; then
        failed+=("$t")
        results+=("$(printf '%-20s FAILED (exit %s), see fuzz/%s and fuzz/artifacts/%s/' "$t" "$rc" "$log" "$t")")
    else
        results+=("$(printf '%-20s ok  %10s runs  %8s exec/s  cov %s' "$t" "${runs:-?}" "${rate:-?}" "${cov:-?}")")
    fi
done

echo
echo "==> fuzz summary (${secs}s per target, build ${build_secs}s, sanitizer $sanitizer)"
printf '%s\n' "${results[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzz: crash in: ${failed[*]}" >&2
    echo "replay: (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run ${build_flags[*]} TARGET artifacts/TARGET/crash-...)" >&2
    exit 1
fi
echo "fuzz: no crashes"
