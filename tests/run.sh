#!/bin/sh
# Run every unit and integration test; print "N passed, N failed[, N skipped]"
# and exit non-zero if anything failed.  Usage: tests/run.sh [BUILD_DIR]
BUILD=${1:-build}
export BUILD
cd "$(dirname "$0")/.." || exit 2

passed=0 failed=0 skipped=0
log=$(mktemp /tmp/khyve-run.XXXXXX)

count() {
	passed=$((passed + $(grep -c '^PASS ' "$log")))
	failed=$((failed + $(grep -c '^FAIL ' "$log")))
	skipped=$((skipped + $(grep -c '^SKIP ' "$log")))
}

echo "== unit tests"
for t in "$BUILD"/tests/test_*; do
	[ -x "$t" ] || continue
	name=$(basename "$t")
	if timeout -k 5 60 "$t" >"$log.u" 2>&1; then
		n=$(grep -c '^\[       OK \]' "$log.u")
		echo "PASS $name ($n cases)"
		echo "PASS $name" >"$log"
	else
		cat "$log.u"
		echo "FAIL $name"
		echo "FAIL $name" >"$log"
	fi
	count
done

for t in tests/integration/*.sh; do
	echo "== $(basename "$t" .sh)"
	timeout -k 10 900 bash "$t" >"$log" 2>&1
	rc=$?
	cat "$log"
	if [ $rc -ne 0 ]; then
		echo "FAIL $(basename "$t"): script exited with status $rc" | tee -a "$log"
	fi
	count
done
rm -f "$log" "$log.u"

echo
if [ "$skipped" -gt 0 ]; then
	echo "$passed passed, $failed failed, $skipped skipped"
else
	echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
