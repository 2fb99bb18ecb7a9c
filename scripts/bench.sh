#!/usr/bin/env bash
# Run every benchmark and write the report: bench/results/<date>.json, BENCHMARKS.md and the
# plots in bench/results/<date>/ (bench/report.py). `--quick` is a smoke run: one or two runs,
# small clusters; its report goes to bench/results/<date>-quick/ and never replaces BENCHMARKS.md.
#
#   bash scripts/bench.sh [--quick] [--only bench_a,bench_b]
#
# `--only` runs just the benchmarks named (e.g. to redo one); the report then lists only those.
#
# A benchmark that fails (or times out) does not stop the others; the script exits 1 at the end
# if any failed. A benchmark whose script is not on this branch is reported "not present". When
# a benchmark misses a target and accepts `--profile`, it is run once more with it (py-spy on
# the measured process; bench/profiling.py) and the report links the profile; the numbers in
# the report are those of the run without the profiler.
set -uo pipefail
cd "$(dirname "$0")/.."

quick=0
only=""
usage="usage: bash scripts/bench.sh [--quick] [--only bench_a,bench_b]"
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1 ;;
        --only) only=${2:?$usage}; shift ;;
        *) echo "$usage" >&2; exit 2 ;;
    esac
    shift
done

# The venv as scripts/setup.sh makes it, plus the `bench` extra (matplotlib, py-spy).
if [ ! -x .venv/bin/python ] || ! command -v etcd >/dev/null 2>&1; then
    bash scripts/setup.sh || exit 1
fi
stamp=.venv/.cnm-bench-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] \
    || ! .venv/bin/python -c 'import matplotlib' >/dev/null 2>&1 || [ ! -x .venv/bin/py-spy ]; then
    echo "bench: installing the bench extra (matplotlib, py-spy) into .venv"
    .venv/bin/python -m pip install -q -e '.[dev,bench]' || exit 1
    touch "$stamp"
fi
PY=.venv/bin/python
export PATH="$PWD/.venv/bin:$PATH"  # py-spy for bench/profiling.py

# name | arguments of the full run | arguments of the quick run. The full run's counts are
# chosen so that the whole takes about an hour on a 2-core machine (the 100-node parts are
# most of it); the quick one takes about ten minutes.
BENCHMARKS=(
    "bench_create|--runs 9|--runs 2"
    "bench_auth|--runs 5 --requests 3000|--runs 1 --requests 400"
    "bench_status|--runs 3|--runs 1 --processes 2"
    "bench_footprint|--runs 3|--runs 1"
    "bench_join|--sizes 2,10,30,100 --runs 5|--sizes 2,5 --window 3 --burst 5 --runs 1"
    "bench_idle|--sizes 3,30,100 --runs 3|--sizes 3 --runs 1"
    "bench_watch|--runs 5|--runs 1 --messages 500"
    "bench_events|--runs 5|--runs 1 --events 100 --sizes 10,30"
    "bench_restart|--runs 3|--runs 1"
    "bench_repair|--runs 3|--runs 1"
    "bench_heal|--runs 3|--runs 1"
    "bench_failpoints|--runs 7|--runs 2"
)
# A benchmark that hangs is stopped (SIGINT first, so it cleans up its agents) after this.
limit=$([ $quick = 1 ] && echo 900 || echo 3600)

date=$(date -u +%F)
work=$(mktemp -d /tmp/cnm-bench-XXXXXX)
suffix=$([ $quick = 1 ] && echo -quick || echo)
logs="bench/results/$date$suffix/logs"
mkdir -p "$logs"
runs="$work/runs.tsv"
: >"$runs"
failed=()
began=$SECONDS

run_one() {  # kind name args...: run bench/<name>.py, record a line of runs.tsv
    local kind=$1 name=$2; shift 2
    local json="$work/$name.$kind.json" log="$logs/$name.log"
    [ "$kind" = profile ] && log="$logs/$name-profile.log"
    local command="$PY bench/$name.py $* --json $json"
    echo
    echo "=== $name ($kind): $command"
    local start=$SECONDS
    # shellcheck disable=SC2086
    timeout -s INT -k 60 "$limit" "$PY" "bench/$name.py" "$@" --json "$json" 2>&1 | tee "$log"
    local code=${PIPESTATUS[0]}
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$name" "$code" "$((SECONDS - start))" \
        "$command" "$json" "$log" >>"$runs"
    echo "=== $name ($kind): exit $code after $((SECONDS - start)) s"
    return "$code"
}

known=" $(for entry in "${BENCHMARKS[@]}"; do printf '%s ' "${entry%%|*}"; done)"
for name in ${only//,/ }; do
    if [[ $known != *" $name "* ]]; then
        echo "bench: unknown benchmark $name (known:$known)" >&2
        exit 2
    fi
done

for entry in "${BENCHMARKS[@]}"; do
    IFS='|' read -r name full small <<<"$entry"
    if [ -n "$only" ] && [[ ",$only," != *",$name,"* ]]; then
        continue
    fi
    args=$([ $quick = 1 ] && echo "$small" || echo "$full")
    if [ ! -f "bench/$name.py" ]; then
        echo
        echo "=== $name: not present on this branch"
        printf 'run\t%s\tabsent\t0\t%s\t\t\n' "$name" "bench/$name.py" >>"$runs"
        continue
    fi
    # shellcheck disable=SC2086
    if ! run_one run "$name" $args; then
        failed+=("$name")
    fi
    # A missed target: once more with the profiler, if the benchmark can take it.
    if [ -f "$work/$name.run.json" ] && "$PY" bench/report.py has-miss "$work/$name.run.json" \
        && "$PY" "bench/$name.py" --help 2>/dev/null | grep -q -- '--profile'; then
        # shellcheck disable=SC2086
        run_one profile "$name" $args --profile || true
    fi
done

echo
echo "=== report ($(((SECONDS - began) / 60)) min of benchmarks; work files in $work)"
report_args=(gather --runs-file "$runs" --date "$date")
[ $quick = 1 ] && report_args+=(--quick)
if ! "$PY" bench/report.py "${report_args[@]}"; then
    echo "bench: the report could not be written" >&2
    exit 1
fi
if [ ${#failed[@]} -gt 0 ]; then
    echo "bench: failed: ${failed[*]} (see their logs in $logs)" >&2
    exit 1
fi
