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

# ---- time limits -----------------------------------------------------------
# Every time limit in the tests - each timeout(1), each polling bound, each
# sleep that waits for a guest or khyve to get somewhere - is written for
# this host and multiplied by KHYVE_TIMEOUT_SCALE (a positive integer,
# default 1), which the test machine (QEMU TCG, 5-20x slower) sets.  Limits
# are scaled, never removed.
SCALE=${KHYVE_TIMEOUT_SCALE:-1}
case $SCALE in
'' | 0* | *[!0-9]*)
	fail timeout-scale "KHYVE_TIMEOUT_SCALE='$SCALE' is not a positive integer; using 1"
	SCALE=1
	;;
esac
export KHYVE_TIMEOUT_SCALE=$SCALE	# for the python helpers

# tmo SECONDS: SECONDS (an integer or a decimal like 0.25) times the scale
tmo() {
	local s=$1 i f n d
	case $s in
	*.*)
		i=${s%%.*} f=${s#*.}
		d=$((10 ** ${#f}))
		n=$(((10#${i:-0} * d + 10#$f) * SCALE))
		printf '%d.%0*d\n' $((n / d)) ${#f} $((n % d))
		;;
	*) echo $((s * SCALE)) ;;
	esac
}

# now_us: microseconds since the epoch (no fork)
now_us() { echo "${EPOCHREALTIME//[!0-9]/}"; }

# _us SECONDS: SECONDS (integer or decimal), scaled, in microseconds
_us() {
	local s=$1 i f
	case $s in
	*.*) i=${s%%.*} f=${s#*.}000000 ;;
	*) i=$s f=000000 ;;
	esac
	echo $(((10#${i:-0} * 1000000 + 10#${f:0:6}) * SCALE))
}

# LIMIT: the scaled seconds of the last bounded or wait_bounded call, for
# the FAIL message; TIMED_OUT: the status they return when the limit hit.
LIMIT=
TIMED_OUT=124

# bounded SECONDS CMD...: CMD under timeout(1) with the scaled limit (and a
# scaled KILL 5 s later); status 124 (TIMED_OUT) when the limit was hit,
# whether TERM ended it (124) or it took the KILL (137).
bounded() {
	local secs=$1 start rc
	shift
	LIMIT=$(tmo "$secs")
	start=${EPOCHREALTIME//[!0-9]/}
	timeout -k "$(tmo 5)" "$LIMIT" "$@"
	rc=$?
	if [ $rc -eq 137 ] && [ $((${EPOCHREALTIME//[!0-9]/} - start)) -ge $((LIMIT * 1000000)) ]; then
		rc=$TIMED_OUT
	fi
	return $rc
}

# running PID: true while our child PID has not exited (kill -0 is no use:
# it succeeds on a zombie that nobody has waited for yet)
running() {
	local s
	{ read -r s </proc/"$1"/stat; } 2>/dev/null || return 1
	s=${s##*) }
	[ "${s%% *}" != Z ]
}

# wait_bounded PID SECONDS: wait for the background child PID at most
# SECONDS (scaled); its exit status, or after kill -9 status 124
# (TIMED_OUT), which checks report with status_text as "did not finish
# within N s".  Replaces every bare `wait PID`.
wait_bounded() {
	local pid=$1 end
	LIMIT=$(tmo "$2")
	end=$((${EPOCHREALTIME//[!0-9]/} + $(_us "$2")))
	while running "$pid"; do
		if [ "${EPOCHREALTIME//[!0-9]/}" -ge "$end" ]; then
			kill -9 "$pid" 2>/dev/null
			wait "$pid" 2>/dev/null
			return $TIMED_OUT
		fi
		sleep 0.02
	done
	wait "$pid"
}

# status_text RC: "exit status RC", or "did not finish within N s" when RC
# is the status bounded/wait_bounded give a run they had to stop
status_text() {
	if [ "$1" -eq $TIMED_OUT ]; then
		echo "did not finish within $LIMIT s"
	else
		echo "exit status $1"
	fi
}

# wait_until SECONDS CMD...: run CMD every 20 ms until it succeeds (status
# 0), at most SECONDS (scaled); status 1 if it never did, or as soon as CMD
# says there is no point waiting on (status 2)
wait_until() {
	local end=$((${EPOCHREALTIME//[!0-9]/} + $(_us "$1"))) rc
	shift
	while :; do
		"$@"
		rc=$?
		[ $rc -eq 0 ] && return 0
		[ $rc -eq 2 ] && return 1
		[ "${EPOCHREALTIME//[!0-9]/}" -lt "$end" ] || return 1
		sleep 0.02
	done
}

# socket_up SOCKET PID: SOCKET exists (0); PID is gone (2: stop waiting)
socket_up() {
	[ -S "$1" ] && return 0
	running "$2" || return 2
	return 1
}

# ready FILE PID: FILE exists (0); PID is gone (2: stop waiting); for
# wait_until, with helpers that create FILE once they are ready
ready() {
	[ -e "$1" ] && return 0
	running "$2" || return 2
	return 1
}

# wait_socket SOCKET PID [SECONDS]: until khyve PID has made its control
# socket RUNDIR/NAME.sock and answers --status on it (default bound 10 s,
# scaled); false if it did not, or exited first.  (khyve binds the socket
# before it listens: a client that connects as soon as the file appears
# may find nobody listening yet.)
wait_socket() {
	local end=$((${EPOCHREALTIME//[!0-9]/} + $(_us "${3:-10}"))) name dir
	name=$(basename "$1" .sock) dir=$(dirname "$1")
	until [ -S "$1" ] && "$BUILD/khyvectl" --vm="$name" --rundir="$dir" --timeout="$(tmo 5)" --status \
		</dev/null >/dev/null 2>&1; do
		running "$2" || return 1
		[ "${EPOCHREALTIME//[!0-9]/}" -lt "$end" ] || return 1
		sleep 0.02
	done
}

# nap SECONDS: sleep without a fork (read -t on a FIFO nobody writes), for
# polls that must notice a guest's line within milliseconds even when the
# host is loaded and every fork is slow
mkfifo "$TMP/.nap" && exec {NAPFD}<>"$TMP/.nap"
nap() { read -r -t "$1" -u "$NAPFD" _; }

# wait_line FILE REGEX PID [SECONDS]: until FILE has a line matching REGEX
# (an extended regular expression; default bound 60 s, scaled); false if
# not, or PID exited first without writing it.  Reads FILE as it grows,
# every 5 ms, without a fork.
wait_line() {
	local file=$1 re=$2 pid=$3 end fd line buf=
	end=$((${EPOCHREALTIME//[!0-9]/} + $(_us "${4:-60}")))
	until [ -e "$file" ] && exec {fd}<"$file"; do
		running "$pid" && [ "${EPOCHREALTIME//[!0-9]/}" -lt "$end" ] || return 1
		nap 0.005
	done 2>/dev/null
	while :; do
		while IFS= read -r -u "$fd" line; do
			line=$buf$line buf=
			if [[ $line =~ $re ]]; then
				exec {fd}<&-
				return 0
			fi
		done
		buf+=$line	# a line not finished yet
		line=
		if ! running "$pid"; then
			# what it wrote last
			while IFS= read -r -u "$fd" line || [ -n "$line" ]; do
				line=$buf$line buf=
				[[ $line =~ $re ]] && { exec {fd}<&-; return 0; }
				line=
			done
			exec {fd}<&-
			[[ $buf =~ $re ]]
			return
		fi
		if [ "${EPOCHREALTIME//[!0-9]/}" -ge "$end" ]; then
			exec {fd}<&-
			return 1
		fi
		nap 0.005
	done
}

# ---- random moments of a guest's run ------------------------------------------
# The moments of checkpoints and suspends are tied to the guest's progress
# (its "round N" lines on COM1), not to the clock, so that a slower machine
# takes them at the same places in the run and none comes after the end.

# pick_rounds K FIRST LAST: K random rounds in FIRST..LAST (0 is "right after
# the start"), ascending, in the array PICKED; from $RANDOM, so a script's
# seed repeats them
pick_rounds() {
	local k=$1 lo=$2 hi=$3 i
	PICKED=()
	for ((i = 0; i < k; i++)); do
		PICKED+=($((lo + RANDOM % (hi - lo + 1))))
	done
	mapfile -t PICKED < <(printf '%s\n' "${PICKED[@]}" | sort -n)
}

# at_round OUT ROUND PID: wait until the guest whose COM1 goes to OUT has
# printed "round ROUND" (at most 60 s, scaled; ROUND 0: no wait; "any": any
# round line), then a random 0-9 ms (scaled) more; false, with the reason
# in $AT_ROUND_WHY, if khyve PID exited or the bound passed first.  Nothing
# forks between the line and the return: on an idle host a round can take
# as little as 5 ms.
at_round() {
	local out=$1 round=$2 pid=$3 re off
	AT_ROUND_WHY=
	off=$(tmo "0.00$((RANDOM % 10))")
	re="^round $round"$'\r?$'
	[ "$round" = any ] && re='^round [0-9]+'
	if [ "$round" != 0 ] && ! wait_line "$out" "$re" "$pid" 60; then
		if running "$pid"; then
			AT_ROUND_WHY="no 'round $round' from the guest within $(tmo 60) s: $(tail -1 "$out")"
		else
			AT_ROUND_WHY="khyve exited before round $round: $(tail -1 "$out")"
		fi
		return 1
	fi
	nap "$off"
	if ! running "$pid"; then
		AT_ROUND_WHY="khyve exited before the checkpoint: $(tail -1 "$out")"
		return 1
	fi
}

# snap_now PID SOCKET ACTION [FILE [disks]]: stop khyve PID (SIGSTOP), hand
# it ACTION (checkpoint, suspend or pause) through its control SOCKET and
# let it go on (tests/integration/control_client.py snap): the request is
# waiting when khyve resumes, so the moment does not drift by a client's
# start-up, which under load took longer than a short run has left.  False,
# with the reason in $SNAP_WHY, if khyve had exited or the request failed.
# With HOLD=1, a checkpoint that succeeded leaves khyve stopped again (the
# guest ran on while it was saved): the next snap_at, or go, continues it.
snap_now() {
	local pid=$1 sock=$2 rc
	shift 2
	SNAP_WHY=
	if ! running "$pid" || ! kill -STOP "$pid" 2>/dev/null; then
		SNAP_WHY="khyve exited before the $1"
		return 1
	fi
	bounded 60 python3 tests/integration/control_client.py "$sock" snap "$pid" \
		"$([ "${HOLD:-}" = 1 ] && [ "$1" = checkpoint ] && echo hold || echo go)" "$@" >"$TMP/snap.msg" 2>&1
	rc=$?
	if [ $rc -ne 0 ]; then
		kill -CONT "$pid" 2>/dev/null	# whatever happened in the client
		SNAP_WHY="$1: $(status_text $rc): $(head -3 "$TMP/snap.msg" | tr '\n' ' ')"
		return 1
	fi
}

# go PID: continue khyve PID (held by snap_at)
go() { kill -CONT "$1" 2>/dev/null; }

# snap_at OUT ROUND PID SOCKET ACTION [FILE [disks]]: snap_now at a random
# moment of round ROUND (at_round), continuing khyve first if a previous
# snap_at held it.  Checkpoints hold it (HOLD=1): the script must go PID
# after its last one.
snap_at() {
	local out=$1 round=$2
	shift 2
	go "$1"
	if ! at_round "$out" "$round" "$1"; then
		SNAP_WHY=$AT_ROUND_WHY
		return 1
	fi
	HOLD=1 snap_now "$@" || { SNAP_WHY="in round $round: $SNAP_WHY $(tail -1 "$out")"; return 1; }
}

# cp_verdict NAME K FAILED: the check NAME passes when all K checkpoints
# succeeded; FAILED lists those that did not ("i (why); ...")
cp_verdict() {
	if [ -z "$3" ]; then
		pass "$1"
	else
		fail "$1" "every one of $2 checkpoints must succeed; failed: $3"
	fi
}

# cp_guest NAME SNAP [ARG...]: the test guest's blk, rng and smp workload on
# 2 vCPUs under khyve (with ARGs; $CP_ENV, e.g. KHYVE_BLK_NO_URING=1, in its
# environment; its socket in $RUN), checkpointed with its disks to SNAP at a
# random moment of its first half; checks NAME (the reference digest) and
# NAME-checkpoint.  Leaves the reference digest in $want.
cp_guest() {
	local name=$1 snap=$2 rounds cmd pid bad=
	shift 2
	rounds=$(by_set 12 40)
	cmd="workload=blk,rng,smp rounds=$rounds blkmb=4 seed=$SEED"
	want=$(ref_digest 2 "$cmd")
	truncate -s 8M "$TMP/$name.img"
	env ${CP_ENV:-} "$KHYVE" --rundir "$RUN" "$@" -l "com1,file:$TMP/$name.out" -c 2 -m 64M \
		-s 3,virtio-blk,$TMP/$name.img -s 4,virtio-rnd -k "$GUEST" -A "$cmd" --debug-exit "$name" \
		</dev/null >/dev/null 2>"$TMP/$name.err" &
	pid=$!
	VMPIDS="$VMPIDS $pid"
	wait_socket "$RUN/$name.sock" $pid 10
	pick_rounds 1 0 $((rounds / 2))
	snap_at "$TMP/$name.out" "${PICKED[0]}" $pid "$RUN/$name.sock" checkpoint "$snap" disks ||
		bad=" 1 ($SNAP_WHY);"
	go $pid
	wait_bounded $pid 300
	judge $name "$want" $?
	cp_verdict $name-checkpoint 1 "$bad"
}

# ---- core and full sets ------------------------------------------------------
# KHYVE_TEST_SET=core|full (default full).  The core set covers every area;
# full adds the repetitions (more vCPU counts and sizes of the same
# workload, more random checkpoints, second backends of the same behaviour,
# longer fuzz loops, 4 GiB guests).  A full-only check is not run in core
# and prints nothing (it is no SKIP).
TEST_SET=${KHYVE_TEST_SET:-full}
case $TEST_SET in
core | full) ;;
*)
	fail test-set "KHYVE_TEST_SET='$TEST_SET' is neither core nor full; running full"
	TEST_SET=full
	;;
esac

# full_only: true when the set is full (`full_only && check ...`)
full_only() { [ "$TEST_SET" = full ]; }

# by_set CORE FULL: CORE in the core set, FULL in the full one
by_set() { if full_only; then echo "$2"; else echo "$1"; fi; }

# Appended to command lines that run the fpu workload: the core set asks
# for 1/12 of its loop (emulated floating point in the test machine is
# ~100x slower than native); the full set keeps the default.
FPUITERS=$(by_set " fpuiters=262144" "")

# sanitizer_report FILE: true if FILE holds an ASan/UBSan/LSan report
sanitizer_report() {
	grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: UndefinedBehaviorSanitizer' "$1"
}

# expect_error NAME "message part" KHYVE-ARGS...
# khyve must exit 4 with exactly one line on stderr containing the message.
expect_error() {
	local name=$1 want=$2 rc lines
	shift 2
	bounded 30 "$KHYVE" "$@" </dev/null >"$TMP/out" 2>"$TMP/err"
	rc=$?
	lines=$(wc -l <"$TMP/err")
	if sanitizer_report "$TMP/err"; then
		fail "$name" "sanitizer report: $(head -3 "$TMP/err" | tr '\n' ' ')"
	elif [ $rc -ne 4 ]; then
		fail "$name" "$(status_text $rc), want 4 (stderr: $(head -c 300 "$TMP/err"))"
	elif [ "$lines" -ne 1 ]; then
		fail "$name" "want one line on stderr, got $lines: $(head -c 300 "$TMP/err")"
	elif ! grep -qF -- "$want" "$TMP/err"; then
		fail "$name" "stderr '$(cat "$TMP/err")' lacks '$want'"
	else
		pass "$name"
	fi
}

# ref_digest NCPU CMDLINE: the host reference digest
# (empty, with testguest-ref's complaint on stderr, if it fails: a FAIL
# for the check that needs it, never a SKIP)
ref_digest() {
	bounded 120 "$REF" -c "$1" "$2" | sed -n 's/^digest=\([0-9a-f]\{16\}\)$/\1/p'
}

# guest_digest FILE: the digest of a PASS line in FILE, empty otherwise
guest_digest() {
	sed -n 's/^khyve-testguest: PASS digest=\([0-9a-f]\{16\}\)\r\{0,1\}$/\1/p' "$1" | tail -1
}

# judge NAME WANT RC: the check NAME passes when khyve ended with status 1
# (the guest's PASS through debug-exit), the guest printed digest WANT in
# $TMP/NAME.out, and $TMP/NAME.err holds no sanitizer report.  RC 124 is a
# run that bounded/wait_bounded stopped.
judge() {
	local name=$1 want=$2 rc=$3 got
	got=$(guest_digest "$TMP/$name.out")
	if sanitizer_report "$TMP/$name.err"; then
		fail "$name" "sanitizer report: $(head -5 "$TMP/$name.err" | tr '\n' ' ')"
	elif [ -z "$want" ]; then
		fail "$name" "no reference digest (testguest-ref failed)"
	elif [ "$rc" -ne 1 ] || [ "$got" != "$want" ]; then
		fail "$name" "$(status_text "$rc") (want 1), digest '$got' (reference '$want'): $(tail -2 "$TMP/$name.out" | tr '\n' ' ') $(head -c 300 "$TMP/$name.err")"
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
	bounded 300 "$KHYVE" -c "$ncpu" -m "$mem" -k "$kernel" -A "$cmd" --debug-exit \
		-l "com1,file:$TMP/$name.out" "t-$$" </dev/null >/dev/null 2>"$TMP/$name.err"
	rc=$?
	got=$(guest_digest "$TMP/$name.out")
	if sanitizer_report "$TMP/$name.err"; then
		fail "$name" "sanitizer report: $(head -5 "$TMP/$name.err" | tr '\n' ' ')"
	elif [ $rc -ne 1 ]; then
		fail "$name" "$(status_text $rc), want 1; guest said: $(tail -3 "$TMP/$name.out" | tr '\n' ' ') $(head -c 300 "$TMP/$name.err")"
	elif [ "$got" != "$want" ]; then
		fail "$name" "digest '$got', reference '$want'"
	else
		pass "$name"
	fi
}

have_guest() { [ -x "$GUEST" ] && [ -x "$REF" ]; }
