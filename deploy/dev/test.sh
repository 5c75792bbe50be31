#!/usr/bin/env bash
# What `make test` runs: services, vet, then the unit tests and the fuzz
# targets side by side, the fuzz phase niced. The unit tests spend much of
# their time waiting (doors, timeouts, processes, browsers) on a 2-core
# machine; the fuzz targets (each for its FUZZTIME of wall time) take the
# cores those leave idle instead of running after them, and the nice level
# keeps the tests' own timing what it is alone. The fuzz output is printed
# as one block once it is done.
#
# Every phase runs even when one before it failed (one log tells all); the
# exit status is non-zero when any failed. Each phase's wall and CPU time
# and the load average at its start and end are printed when it ends, and
# all of them again at the end.
set -uo pipefail
cd "$(dirname "$0")/../.."
make=${MAKE:-make}
echo "test: $(nproc) cores"

work=$(mktemp -d)
summary=$work/summary
: >"$summary"
started=$SECONDS
fuzzpid=
finish() {
	[ -z "$fuzzpid" ] || kill -- "-$fuzzpid" 2>/dev/null
	echo "test: phases (wall, user and sys CPU in seconds; load average at start -> end):"
	sed 's/^/test:   /' "$summary"
	echo "test: total $((SECONDS - started)) s wall"
	rm -rf "$work"
}
trap finish EXIT

# phase NAME COMMAND...: runs COMMAND and records its times in $summary.
phase() {
	local name=$1 load0 rc=0 t line
	shift
	load0=$(cut -d' ' -f1-3 /proc/loadavg)
	echo "test: phase $name: $* (load $load0)"
	t=$work/time.$name
	# bash's time: wall, and the CPU of the command and of all it waited for.
	{ TIMEFORMAT='%R %U %S'; time "$@" 2>&3; } 3>&2 2>"$t" || rc=$?
	# shellcheck disable=SC2046 # three numbers
	line=$(printf '%-8s %s s wall, %s s user, %s s sys; load %s -> %s' "$name" $(tail -1 "$t") "$load0" "$(cut -d' ' -f1-3 /proc/loadavg)")
	[ "$rc" -eq 0 ] || line="$line; FAILED (exit $rc)"
	echo "$line" >>"$summary"
	echo "test: phase $line"
	return "$rc"
}

failed=()
phase services "$make" --no-print-directory services || failed+=(services)
phase vet "$make" --no-print-directory vet || failed+=(vet)

# In a process group of its own (set -m), which finish ends if need be.
set -m
phase fuzz nice -n 10 "$make" --no-print-directory fuzz >"$work/fuzz.log" 2>&1 &
fuzzpid=$!
set +m

phase unit "$make" --no-print-directory unit-only || failed+=(unit)

echo "test: waiting for the fuzz phase (started beside unit)"
rc=0
wait "$fuzzpid" || rc=$?
fuzzpid=
echo "test: ---- output of the fuzz phase ----"
cat "$work/fuzz.log"
echo "test: ---- end of the fuzz phase ----"
[ "$rc" -eq 0 ] || failed+=(fuzz)

if [ "${#failed[@]}" -gt 0 ]; then
	echo "test: FAILED: ${failed[*]}"
	exit 1
fi
echo "test: every phase passed"
