#!/usr/bin/env bash
# Every benchmark in one go, sized to finish in under 30 minutes on a quiet 2-CPU machine,
# then the plots: JSON in bench/results/, PNG beside it and in docs/plots/.
#
#   bench/all.sh            the full set: about 16 minutes on a quiet machine (estimated
#                           from each step timed alone at load 3-9, where it summed to
#                           ~24 minutes); the step times are printed
#   bench/all.sh --quick    every step small (4 minutes at load 4-6): checks the harness,
#                           not the figures; the plots' titles say it was a quick run
#   bench/all.sh --force    run even though the machine is busy (the figures suffer)
#
# Refuses to start when the 1-minute load average is above 1.5 (others' work would be in
# every figure), prints the load average at the start, after each step and at the end,
# and goes on past a failing step (it is named at the end; the exit status is then 1).
# The cluster step needs PostgreSQL (scripts/services starts it; THREADLINE_TEST_POSTGRES
# names another) and is skipped when none answers.
# Needs the virtual environment of the README with the bench extra:
#   .venv/bin/pip install -e '.[test,postgres,bench]'
set -uo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
MAX_LOAD=1.5
quick=0
force=0
for argument in "$@"; do
    case "$argument" in
        --quick) quick=1 ;;
        --force) force=1 ;;
        -h | --help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "all.sh: unknown argument $argument (--quick, --force)" >&2; exit 2 ;;
    esac
done

load() { cut -d' ' -f1-3 /proc/loadavg; }

echo "bench/all.sh $(date -u +'%Y-%m-%d %H:%M:%S UTC') on $(hostname), $(nproc) CPUs"
echo "load average at start: $(load)"
one_minute=$(cut -d' ' -f1 /proc/loadavg)
if awk -v load="$one_minute" -v max="$MAX_LOAD" 'BEGIN { exit !(load > max) }'; then
    if [ "$force" = 0 ]; then
        echo "all.sh: the 1-minute load average is $one_minute (> $MAX_LOAD): the machine is" \
             "busy and every figure would carry others' work. Wait, or pass --force." >&2
        exit 2
    fi
    for _ in 1 2 3; do
        echo "WARNING: 1-minute load average $one_minute > $MAX_LOAD: running anyway (--force);" \
             "the figures are NOT those of a quiet machine" >&2
    done
fi

if [ "$quick" = 1 ]; then
    note="quick run (bench/all.sh --quick): small sizes, not the full sweep"
    storage_sweep=(--sizes 10000,30000,100000 --samples 100 --appends 5000)
    storage=(--events 100000 --conversations 100 --big-conversation 10000 --append-events 20000
             --sequential-events 2000 --samples 100 --runs 1)
    wal=(--quick)
    fanout=(--subscribers 1,10,100,1000 --seconds 3 --flat-deliveries 30000 --flat-min 20
            --flat-max 500)
    sessions=(--conversations 100 --hold-pace 0 --steps 100,500 --creations 200
              --spawn-repeats 10 --component-calls 15 --appends 200 --histories 0,100,500)
    http=(--runs 1 --requests 500 --seconds 2)
    export_=(--events 50000)
    cluster=(--quick --deployments sqlite,pg2)
else
    note=""
    storage_sweep=(--sizes 10000,30000,100000,300000,1000000)
    storage=(--runs 1 --samples 300)
    wal=(--runs 3 --seconds 10)
    fanout=(--subscribers 1,10,100,1000,2000,5000 --seconds 5 --flat-deliveries 100000
            --flat-min 20 --flat-max 2000)
    sessions=(--conversations 100,1000 --steps 100,500,1000,2000,5000)
    http=(--runs 3)
    export_=(--events 300000)
    cluster=(--subscribers 100,1000 --seconds 5)
fi

postgres_answers() {
    "$PYTHON" - <<'PYTHON' 2>/dev/null
import asyncio, sys
import asyncpg
sys.path.insert(0, ".")
from bench.cluster_postgres import ADMIN_URL

async def main() -> None:
    connection = await asyncpg.connect(ADMIN_URL, timeout=3)
    await connection.close()

asyncio.run(main())
PYTHON
}

names=()
times=()
failed=()
step() {
    local name=$1
    shift
    echo
    echo "=== $name: $*"
    local began=$SECONDS
    "$PYTHON" "$@"
    local status=$?
    local took=$((SECONDS - began))
    names+=("$name")
    times+=("$took")
    [ "$status" = 0 ] || failed+=("$name (exit $status)")
    echo "=== $name: ${took} s, exit $status; load average $(load)"
}

started=$SECONDS
step storage-sweep bench/storage_sweep.py "${storage_sweep[@]}"
step storage bench/storage.py "${storage[@]}"
step wal bench/wal.py "${wal[@]}"
step fanout bench/fanout.py --servers sio,ws,bare "${fanout[@]}"
step sessions bench/sessions.py "${sessions[@]}"
step http bench/http.py "${http[@]}"
step export bench/export.py "${export_[@]}"
if postgres_answers; then
    step cluster bench/cluster.py "${cluster[@]}"
else
    echo
    echo "=== cluster: skipped, no PostgreSQL answers (scripts/services starts one)"
fi
step plots bench/plots.py --out docs/plots --note "$note" storage_sweep fanout sessions

echo
echo "step times"
for index in "${!names[@]}"; do
    printf '  %-14s %5d s\n' "${names[$index]}" "${times[$index]}"
done
printf '  %-14s %5d s (%d min)\n' total $((SECONDS - started)) $(((SECONDS - started + 59) / 60))
echo "load average at end: $(load)"
echo "results: bench/results/*.json; plots: docs/plots/*.png"
if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED: ${failed[*]}" >&2
    exit 1
fi
