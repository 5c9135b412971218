# Shared helpers for the integration tests (bash).  Each test script sources
# this file, runs checks, and prints one line per check:
#   PASS name | FAIL name: reason | SKIP name: reason
# tests/run.sh counts those lines.

BUILD=$(cd "${BUILD:-build}" && pwd)
KHYVE=$BUILD/khyve
GUEST=$BUILD/guest/testguest
GUEST64=$BUILD/guest/testguest.elf64
REF=$BUILD/guest/testguest-ref
FIX=$BUILD/tests/fixtures
TMP=$(mktemp -d /tmp/khyve-test.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

# Sanitizer builds: make any report fail the check, and keep leak checking on.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:exitcode=86}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:exitcode=87}

pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; }
skip() { echo "SKIP $1: $2"; }

# sanitizer_report FILE: true if FILE holds an ASan/UBSan/LSan report
sanitizer_report() {
	grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: UndefinedBehaviorSanitizer' "$1"
}

# expect_error NAME "message part" KHYVE-ARGS...
# khyve must exit 4 with exactly one line on stderr containing the message.
expect_error() {
	local name=$1 want=$2 rc lines
	shift 2
	timeout -k 5 30 "$KHYVE" "$@" </dev/null >"$TMP/out" 2>"$TMP/err"
	rc=$?
	lines=$(wc -l <"$TMP/err")
	if sanitizer_report "$TMP/err"; then
		fail "$name" "sanitizer report: $(head -3 "$TMP/err" | tr '\n' ' ')"
	elif [ $rc -ne 4 ]; then
		fail "$name" "exit status $rc, want 4 (stderr: $(head -c 300 "$TMP/err"))"
	elif [ "$lines" -ne 1 ]; then
		fail "$name" "want one line on stderr, got $lines: $(head -c 300 "$TMP/err")"
	elif ! grep -qF -- "$want" "$TMP/err"; then
		fail "$name" "stderr '$(cat "$TMP/err")' lacks '$want'"
	else
		pass "$name"
	fi
}

# ref_digest NCPU CMDLINE: the host reference digest
ref_digest() {
	"$REF" -c "$1" "$2" | sed -n 's/^digest=\([0-9a-f]\{16\}\)$/\1/p'
}

# guest_digest FILE: the digest of a PASS line in FILE, empty otherwise
guest_digest() {
	sed -n 's/^khyve-testguest: PASS digest=\([0-9a-f]\{16\}\)\r\{0,1\}$/\1/p' "$1" | tail -1
}

# judge NAME WANT RC: the check NAME passes when khyve ended with status 1
# (the guest's PASS through debug-exit), the guest printed digest WANT in
# $TMP/NAME.out, and $TMP/NAME.err holds no sanitizer report.
judge() {
	local name=$1 want=$2 rc=$3 got
	got=$(guest_digest "$TMP/$name.out")
	if sanitizer_report "$TMP/$name.err"; then
		fail "$name" "sanitizer report: $(head -5 "$TMP/$name.err" | tr '\n' ' ')"
	elif [ "$rc" -ne 1 ] || [ "$got" != "$want" ]; then
		fail "$name" "status $rc, digest '$got' (reference '$want'): $(tail -2 "$TMP/$name.out" | tr '\n' ' ') $(head -c 300 "$TMP/$name.err")"
	else
		pass "$name"
	fi
}

# run_guest NAME NCPU MEM CMDLINE [KERNEL]: the test guest under khyve must
# print PASS with the reference digest and exit through debug-exit 0 (1).
run_guest() {
	local name=$1 ncpu=$2 mem=$3 cmd=$4 kernel=${5:-$GUEST} rc want got
	want=$(ref_digest "$ncpu" "$cmd")
	if [ -z "$want" ]; then
		fail "$name" "testguest-ref gave no digest for '$cmd'"
		return
	fi
	timeout -k 5 300 "$KHYVE" -c "$ncpu" -m "$mem" -k "$kernel" -A "$cmd" --debug-exit \
		-l "com1,file:$TMP/$name.out" "t-$$" </dev/null >/dev/null 2>"$TMP/$name.err"
	rc=$?
	got=$(guest_digest "$TMP/$name.out")
	if sanitizer_report "$TMP/$name.err"; then
		fail "$name" "sanitizer report: $(head -5 "$TMP/$name.err" | tr '\n' ' ')"
	elif [ $rc -ne 1 ]; then
		fail "$name" "exit status $rc, want 1; guest said: $(tail -3 "$TMP/$name.out" | tr '\n' ' ') $(head -c 300 "$TMP/$name.err")"
	elif [ "$got" != "$want" ]; then
		fail "$name" "digest '$got', reference '$want'"
	else
		pass "$name"
	fi
}

have_guest() { [ -x "$GUEST" ] && [ -x "$REF" ]; }
