#!/bin/sh
# Run the unit and integration tests: one line per check (PASS name,
# FAIL name: reason, SKIP name: reason), then "N passed, N failed[, N
# skipped]"; exit non-zero if anything failed.
#
#   tests/run.sh [BUILD_DIR [all|unit|integration]]     (default build, all)
#
# Every cmocka case of every unit-test binary is a check; a binary that
# crashes, stops early or times out is a FAIL too.  Each integration script
# prints its own check lines; tests/testvm.sh (the test machine itself)
# runs from the host where the integration tests go there, and in the full
# set.
#
# Environment:
#   KHYVE_TIMEOUT_SCALE  multiplies every time limit (a positive integer,
#                        default 1; the test machine sets it)
#   KHYVE_TEST_SET       core or full (default full): core leaves out the
#                        repetitions (tests/lib.sh, full_only)
#   KHYVE_TESTVM         1: run the integration tests inside the test machine
#                        (scripts/testvm); 0: never; unset: there when
#                        scripts/kvm-usable says this host's /dev/kvm cannot
#                        create a VM.  Unit tests always run here.
#   KHYVE_IN_TESTVM      1 inside the test machine (never nested)
#   KHYVE_TEST_SCRIPTS   only these integration scripts (names without .sh,
#                        space-separated; default all; "testvm" names the
#                        test machine's own checks, run where it is used)
BUILD=${1:-build}
PART=${2:-all}
export BUILD
cd "$(dirname "$0")/.." || exit 2

case $PART in
all | unit | integration) ;;
*)
	echo "usage: tests/run.sh [BUILD_DIR [all|unit|integration]]" >&2
	exit 2
	;;
esac
SCALE=${KHYVE_TIMEOUT_SCALE:-1}
case $SCALE in
'' | 0* | *[!0-9]*)
	echo "tests/run.sh: KHYVE_TIMEOUT_SCALE='$SCALE' is not a positive integer" >&2
	exit 2
	;;
esac
# exported only when given: the test machine sets its own (scripts/testvm,
# 10) unless the caller chose one
[ -n "${KHYVE_TIMEOUT_SCALE:-}" ] && export KHYVE_TIMEOUT_SCALE
case ${KHYVE_TEST_SET:-full} in
core | full) ;;
*)
	echo "tests/run.sh: KHYVE_TEST_SET='$KHYVE_TEST_SET' is neither core nor full" >&2
	exit 2
	;;
esac

passed=0 failed=0 skipped=0
log=$(mktemp /tmp/khyve-run.XXXXXX) || exit 2
TESTVM_PIDS= TESTVM_JOBDIR=
# machines still running when we are stopped: scripts/testvm stops its
# QEMU on SIGTERM
trap 'for p in $TESTVM_PIDS; do pkill -TERM -P "$p"; kill "$p"; done 2>/dev/null; wait
	rm -f "$log" "$log.u" "$log.rc"; [ -n "$TESTVM_JOBDIR" ] && rm -rf "$TESTVM_JOBDIR"' EXIT
trap 'exit 130' INT TERM

# count FILE: add FILE's check lines to the totals
count() {
	set -- $(tr -d '\r' <"$1" | awk '/^PASS /{p++} /^FAIL /{f++} /^SKIP /{s++} END{print p+0, f+0, s+0}')
	passed=$((passed + $1))
	failed=$((failed + $2))
	skipped=$((skipped + $3))
}

# cmocka's standard output, one check per case: "[ RUN      ] CASE", then
# the case's own messages, then "[       OK ] CASE", "[  FAILED  ] CASE" or
# "[  SKIPPED ] CASE".  A case with a RUN line and no result is one the
# binary never finished (a crash, an abort, the time limit).  The summary
# after each group repeats failed and skipped names; they follow no RUN
# line and are not counted again.  A binary with several groups
# (test_vblk) may run a case name more than once: its checks are then
# named BINARY/gN/CASE.
UNIT_AWK='
function rec(result, why) {
	n++; res[n] = result; nm[n] = cur; grp[n] = g; msg[n] = why
	if (result == "FAIL") nfail++
	got[g]++
	cur = ""; diag = ""
}
function unfinished() {
	if (rc == 124)
		return "did not finish within " limit " s"
	return "no result: the binary stopped in this case (exit status " rc ")" (diag != "" ? ": " diag : "")
}
{ sub(/\r$/, "") }
/^\[==========\] Running [0-9]+ test\(s\)\./ {
	if (cur != "") rec("FAIL", unfinished())
	g++; announced[g] = $3 + 0; next
}
/^\[==========\] [0-9]+ test\(s\) run\./ {
	if (cur != "") rec("FAIL", unfinished())
	next
}
/^\[ RUN      \] / {
	if (cur != "") rec("FAIL", unfinished())
	cur = substr($0, 14); diag = ""; next
}
/^\[       OK \] / && cur != "" && substr($0, 14) == cur { rec("PASS", ""); next }
/^\[  FAILED  \] / && cur != "" && substr($0, 14) == cur {
	rec("FAIL", diag != "" ? diag : "failed (cmocka gave no message)"); next
}
/^\[  SKIPPED \] / && cur != "" && substr($0, 14) == cur {
	rec("SKIP", diag != "" ? diag : "skipped by the test"); next
}
cur != "" {
	line = $0; gsub(/^[ \t]+|[ \t]+$/, "", line)
	if (line != "" && length(diag) < 400) diag = diag (diag != "" ? " | " : "") line
	next
}
{ last = $0 }
END {
	if (cur != "") rec("FAIL", unfinished())
	for (i = 1; i <= n; i++) {
		name = bin "/" (g > 1 ? "g" grp[i] "/" : "") nm[i]
		print res[i] " " name (res[i] == "PASS" ? "" : ": " substr(msg[i], 1, 500))
	}
	if (g == 0) {
		why = rc == 124 ? "did not finish within " limit " s" : "exit status " rc
		print "FAIL " bin ": no cmocka output (" why ")" (last != "" ? ": " last : "")
		exit
	}
	for (i = 1; i <= g; i++)
		if (got[i] + 0 != announced[i])
			print "FAIL " bin (g > 1 ? "/g" i : "") ": cmocka announced " announced[i] " cases, " got[i] + 0 " reported a result"
	if (rc != 0 && nfail == 0)
		print "FAIL " bin ": " (rc == 124 ? "did not finish within " limit " s" : "exit status " rc " though no case failed") (last != "" ? ": " last : "")
}'

run_units() {
	echo "== unit tests"
	found=0
	for t in "$BUILD"/tests/test_*; do
		[ -x "$t" ] || continue
		found=1
		name=$(basename "$t")
		CMOCKA_MESSAGE_OUTPUT=stdout CMOCKA_TEST_ABORT= \
			timeout -k $((5 * SCALE)) $((60 * SCALE)) "$t" </dev/null >"$log.u" 2>&1
		rc=$?
		[ $rc -eq 137 ] && rc=124	# took the KILL after the TERM
		awk -v bin="$name" -v rc=$rc -v limit=$((60 * SCALE)) "$UNIT_AWK" "$log.u" >"$log"
		cat "$log"
		count "$log"
	done
	if [ $found -eq 0 ]; then
		echo "FAIL unit-tests: no test binaries in $BUILD/tests (make unit)" | tee "$log"
		count "$log"
	fi
}

run_integration() {
	for t in tests/integration/*.sh; do
		script=$(basename "$t" .sh)
		case " ${KHYVE_TEST_SCRIPTS:-$script} " in
		*" $script "*) ;;
		*) continue ;;
		esac
		echo "== $script"
		start=$(date +%s)
		timeout -k $((10 * SCALE)) $((900 * SCALE)) bash "$t" >"$log" 2>&1
		rc=$?
		cat "$log"
		if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
			echo "FAIL $script: did not finish within $((900 * SCALE)) s" | tee -a "$log"
		elif [ $rc -ne 0 ]; then
			echo "FAIL $script: script exited with status $rc" | tee -a "$log"
		fi
		echo "# $script: $(($(date +%s) - start)) s"
		count "$log"
	done
}

# in_testvm: should the integration tests run in the test machine?
in_testvm() {
	[ "${KHYVE_IN_TESTVM:-}" = 1 ] && return 1
	case ${KHYVE_TESTVM:-unset} in
	1) return 0 ;;
	0) return 1 ;;
	unset) ! scripts/kvm-usable 2>/dev/null ;;
	*)
		echo "tests/run.sh: KHYVE_TESTVM='$KHYVE_TESTVM' is neither 0 nor 1; running here" >&2
		return 1
		;;
	esac
}

# The integration scripts in test machines (scripts/testvm, ~15 s to
# start), each script in a machine of its own, so that a machine that hangs
# costs one script, not the rest; KHYVE_TESTVM_JOBS machines at a time
# (default: 2, or 1 on a one-core host).  Each machine runs QEMU's TCG on
# one host thread (scripts/testvm says why), so two of them keep two cores
# busy; each script's lines are shown whole when it ends, longest first.
#
# The machine used to hang now and then (no console output, no heartbeat;
# seen in 03, 06, 31, 32 and 33): the kernel patching its code for a KVM
# static key under QEMU's multi-threaded TCG, which the VM testvm-init now
# holds for the machine's life prevents (see there).  It also panicked its
# own kernel ("corrupted stack end detected inside scheduler") under
# multi-threaded TCG.  So a script whose machine hung, panicked or did not
# start still runs once more in a new one, and that second run is the one
# counted (the first one's lines are shown as comments).  A machine failing
# twice, or a script whose totals do not match the lines that arrived, is a
# FAIL.

# testvm_flags SCRIPT: scripts/testvm's options for SCRIPT: --linux (a
# machine of one vCPU, see there) for 40-linux
testvm_flags() {
	[ "$1" = 40-linux ] && echo --linux
}

# testvm_job SCRIPT DIR: run SCRIPT in a test machine (twice if the first
# one failed), its lines in DIR/SCRIPT.log, its status in DIR/SCRIPT.rc,
# the first attempt's in DIR/SCRIPT.pre; DIR/SCRIPT.done when finished.
testvm_job() {
	local script=$1 out=$2/$1 attempt total
	for attempt in 1 2; do
		[ $attempt = 2 ] &&
			echo "# $script: its test machine hung; running it again in a new one" >>"$out.pre"
		rm -f "$out.rc"
		{
			KHYVE_TEST_SET=${KHYVE_TEST_SET:-core} KHYVE_TEST_SCRIPTS=$script \
				scripts/testvm $(testvm_flags "$script") sh tests/run.sh "$BUILD" integration 2>&1
			echo $? >"$out.rc"
		} >"$out.log"
		total=$(tr -d '\r' <"$out.log" | grep -E '^[0-9]+ passed, [0-9]+ failed(, [0-9]+ skipped)?$' | tail -1)
		# the machine hung or never started: run the script again, once
		if [ -z "$total" ] && [ $attempt = 1 ] &&
			grep -qE "^testvm: the test machine( stopped answering| did not start|'s kernel panicked)" "$out.log"; then
			sed 's/^/# first attempt: /' "$out.log" >>"$out.pre"
			continue
		fi
		break
	done
	: >"$out.done"
}

# testvm_report SCRIPT DIR: show a finished job's lines, check its totals
# against them, and count them
testvm_report() {
	local script=$1 out=$2/$1 rc total seen why
	[ -e "$out.pre" ] && cat "$out.pre"
	grep -vE '^[0-9]+ passed, [0-9]+ failed' "$out.log"
	rc=$(cat "$out.rc" 2>/dev/null)
	total=$(tr -d '\r' <"$out.log" | grep -E '^[0-9]+ passed, [0-9]+ failed(, [0-9]+ skipped)?$' | tail -1)
	set -- $(tr -d '\r' <"$out.log" | awk '/^PASS /{p++} /^FAIL /{f++} /^SKIP /{s++} END{print p+0, f+0, s+0}')
	seen="$1 passed, $2 failed"
	[ "$3" -gt 0 ] && seen="$seen, $3 skipped"
	why=$(tr -d '\r' <"$out.log" | grep '^testvm: ' | tail -3 | tr '\n' ' ' | sed 's/ *$//')
	[ -n "$why" ] || why=$(tr -d '\r' <"$out.log" | grep -v '^$' | tail -3 | tr '\n' ' ' | sed 's/ *$//')
	if [ -z "$total" ]; then
		echo "FAIL testvm-$script: the test machine ended (status ${rc:-unknown}) before $script printed its totals: ${why:-no message}" |
			tee -a "$out.log"
	elif [ "$total" != "$seen" ]; then
		echo "FAIL testvm-$script: $script reported '$total', the lines that arrived here say '$seen'" | tee -a "$out.log"
	elif [ "${rc:-1}" -ne 0 ] && [ "$2" -eq 0 ]; then
		echo "FAIL testvm-$script: status ${rc:-unknown} although $script reported no failure: ${why:-no message}" |
			tee -a "$out.log"
	fi
	count "$out.log"
}

# the scripts that take longest in the test machine start first (measured
# 2026-12-06), so that the last one to end is a short one
TESTVM_LONG_FIRST="40-linux 22-restore-data 23-snapshot-hardening 33-virtio-net 34-hostile
	31-virtio-console 32-virtio-blk 52-disk-stall 20-snapshot 10-control"

run_integration_testvm() {
	local jobs dir queue script running started s
	jobs=${KHYVE_TESTVM_JOBS:-}
	if [ -z "$jobs" ]; then
		jobs=$(nproc 2>/dev/null || echo 1)
		[ "$jobs" -gt 2 ] && jobs=2
	fi
	case $jobs in
	'' | 0* | *[!0-9]*)
		echo "FAIL testvm-jobs: KHYVE_TESTVM_JOBS='$jobs' is not a positive integer"
		failed=$((failed + 1))
		return
		;;
	esac
	echo "== integration tests in the test machine (scripts/testvm; KHYVE_TESTVM=0 runs them here)"
	echo "== the ${KHYVE_TEST_SET:-core} set (KHYVE_TEST_SET; make test-full runs every check), $jobs machines at a time"
	# built once here, not by machines starting side by side
	if ! sh scripts/testvm-image "${KHYVE_TESTVM_DIR:-build/testvm}"; then
		echo "FAIL testvm-image: cannot build the test machine's kernel and initramfs"
		failed=$((failed + 1))
		return
	fi
	queue=
	for script in $TESTVM_LONG_FIRST; do
		[ -e "tests/integration/$script.sh" ] && queue="$queue $script"
	done
	for t in tests/integration/*.sh; do
		script=$(basename "$t" .sh)
		case " $queue " in *" $script "*) continue ;; esac
		queue="$queue $script"
	done
	dir=$(mktemp -d /tmp/khyve-jobs.XXXXXX) || exit 2
	TESTVM_JOBDIR=$dir
	running=0 started=
	set -- $queue
	while [ $# -gt 0 ] || [ $running -gt 0 ]; do
		while [ $# -gt 0 ] && [ $running -lt "$jobs" ]; do
			script=$1
			shift
			# KHYVE_TEST_SCRIPTS (make test-linux) chooses here too
			case " ${KHYVE_TEST_SCRIPTS:-$script} " in
			*" $script "*) ;;
			*) continue ;;
			esac
			testvm_job "$script" "$dir" &
			TESTVM_PIDS="$TESTVM_PIDS $!"
			started="$started $script"
			running=$((running + 1))
		done
		[ $running -gt 0 ] || continue
		sleep 1
		for s in $started; do
			[ -e "$dir/$s.done" ] || continue
			testvm_report "$s" "$dir"
			rm -f "$dir/$s.done"
			started=$(echo "$started" | tr ' ' '\n' | grep -vx "$s" | tr '\n' ' ')
			running=$((running - 1))
		done
	done
	wait
	TESTVM_PIDS=
	rm -rf "$dir"
	TESTVM_JOBDIR=
}

case $PART in
all | unit) run_units ;;
esac
# the test machine itself, from here: where it is used, and in the full set
run_testvm_checks() {
	echo "== testvm"
	timeout -k $((10 * SCALE)) $((3600 * SCALE)) bash tests/testvm.sh >"$log" 2>&1
	rc=$?
	cat "$log"
	if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
		echo "FAIL testvm.sh: did not finish within $((3600 * SCALE)) s" | tee -a "$log"
	elif [ $rc -ne 0 ]; then
		echo "FAIL testvm.sh: script exited with status $rc" | tee -a "$log"
	fi
	count "$log"
}

case $PART in
all | integration)
	if in_testvm; then
		# the machine's own checks, unless KHYVE_TEST_SCRIPTS leaves them out
		case " ${KHYVE_TEST_SCRIPTS:-testvm} " in
		*" testvm "*) run_testvm_checks ;;
		esac
		run_integration_testvm
	else
		run_integration
		# where khyve runs directly, the test machine is checked only when
		# the full set is asked for (make test-full)
		# (and KHYVE_TEST_SCRIPTS names it or is not given)
		case " ${KHYVE_TEST_SCRIPTS:-testvm} " in
		*" testvm "*)
			[ "${KHYVE_TEST_SET:-}" = full ] && [ -z "${KHYVE_IN_TESTVM:-}" ] && run_testvm_checks
			;;
		esac
	fi
	;;
esac

echo
if [ "$skipped" -gt 0 ]; then
	echo "$passed passed, $failed failed, $skipped skipped"
else
	echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
