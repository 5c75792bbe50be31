#!/usr/bin/env bash
# Runs every Go fuzz target in the module for FUZZTIME (default 5s) each.
#
# Each package's fuzz-instrumented test binary is built once (`go test -c
# -fuzz`, the same build `go test -fuzz` makes) and run once per target, from
# the package's directory and with go test's fuzz cache, as `go test -fuzz`
# runs it: the targets, their time, seeds, cache and the inputs written
# under testdata/fuzz/ are the same, without one link and go command per
# target (about 13 s each on a loaded 2-core machine; the targets run one
# after the other, each with the whole machine). The binaries are built
# one after the other in the background, from the start: a package's
# targets run while the next packages build, instead of waiting for them.
#
# Go 1.26's fuzz coordinator can report a bare "context deadline exceeded"
# at the end of -fuzztime when a worker is still busy on a loaded machine
# (golang/go#75804, fixed in Go 1.27): no input failed and none is written.
# Such a run is tried once more; if it happens again, the target's corpus
# (seeds and anything found so far) is replayed as a plain test, and only
# a failure there, or any other failure, fails this script. A real finding
# always writes its input under testdata/fuzz/ and fails.
set -euo pipefail
fuzztime=${FUZZTIME:-5s}
cd "$(dirname "$0")/../.."
root=$PWD
module=$(go list -m)
fuzzcache=$(go env GOCACHE)/fuzz
status=0
work=$(mktemp -d)
out=$work/out
trap 'rm -rf "$work"' EXIT

# fuzz_once DIR BIN FN: 0 passed, 1 failed, 2 the coordinator's deadline race.
fuzz_once() {
	local dir=$1 bin=$2 fn=$3
	if (cd "$root/$dir" && "$bin" -test.paniconexit0 -test.timeout=10m0s -test.run='^$' -test.fuzz="^${fn}\$" \
		-test.fuzztime="$fuzztime" -test.fuzzcachedir="$fuzzcache/$module/$dir") 2>&1 | tee "$out"; then
		return 0
	fi
	if grep -q 'Failing input written' "$out" || ! grep -q '^    context deadline exceeded$' "$out"; then
		return 1
	fi
	return 2
}

dirs=$(grep -rlE '^func Fuzz' --include='*_test.go' . | sed 's|^\./||' | xargs -n1 dirname | sort -u)
binof() { echo "$work/$(echo "$1" | tr / _).test"; }

# The builder: each package's binary, then BIN.ok or BIN.failed (its
# output in BIN.log).
(
	for dir in $dirs; do
		bin=$(binof "$dir")
		if go test -c -fuzz=. -o "$bin" "./$dir" >"$bin.log" 2>&1; then
			touch "$bin.ok"
		else
			touch "$bin.failed"
		fi
	done
) &
builder=$!
trap 'kill "$builder" 2>/dev/null || true; wait "$builder" 2>/dev/null || true; rm -rf "$work"' EXIT

for dir in $dirs; do
	fns=$(grep -hoE '^func (Fuzz[A-Za-z0-9_]+)\(' "$dir"/*_test.go | sed -E 's/^func (Fuzz[A-Za-z0-9_]+)\(/\1/' | sort)
	bin=$(binof "$dir")
	echo "fuzz: build ./$dir"
	while [ ! -e "$bin.ok" ] && [ ! -e "$bin.failed" ]; do
		if ! kill -0 "$builder" 2>/dev/null && [ ! -e "$bin.ok" ] && [ ! -e "$bin.failed" ]; then
			echo "fuzz: the builder stopped before ./$dir"
			exit 1
		fi
		sleep 0.2
	done
	cat "$bin.log"
	if [ -e "$bin.failed" ]; then
		echo "fuzz: ./$dir FAILED to build"
		status=1
		continue
	fi
	for fn in $fns; do
		echo "fuzz: ./$dir $fn ($fuzztime)"
		rc=0
		fuzz_once "$dir" "$bin" "$fn" || rc=$?
		if [ "$rc" -eq 2 ]; then
			echo "fuzz: ./$dir $fn: the coordinator's deadline race (golang/go#75804), no failing input; once more"
			rc=0
			fuzz_once "$dir" "$bin" "$fn" || rc=$?
		fi
		if [ "$rc" -eq 2 ]; then
			echo "fuzz: ./$dir $fn: the deadline race again; replaying its corpus as a test"
			rc=0
			go test -count=1 -run="^${fn}\$" "./$dir" || rc=1
		fi
		if [ "$rc" -ne 0 ]; then
			echo "fuzz: ./$dir $fn FAILED"
			status=1
		fi
	done
done
exit $status
