# A peer that never reads must not wedge khyve (issue 11, "nothing blocks"):
# output to anything but a regular file goes through a bounded queue with a
# writer thread of its own (src/core/outq.c), which drops and counts what
# does not fit.  Three guests that write without end:
#   com1-pipe    tests/fixtures/spew.elf on COM1, -l com1,stdio, standard
#                output a FIFO that this script holds open and never reads;
#   con-pipe     the test guest's console workload on virtio-console,stdio,
#                standard output such a FIFO;
#   con-socket   the same on virtio-console,socket:PATH, whose listener
#                accepts and never reads.
# For each: --status answers within 5 s (scaled) and shows output_dropped
# growing (the guest runs on), a checkpoint completes within 30 s with the VM
# still running, the output writer thread is confined by seccomp like every
# thread, and SIGTERM ends khyve within 10 s with status 0 - none of
# it needs SIGKILL.
. tests/lib.sh

CTL=$BUILD/khyvectl
RUN=$TMP/run
VMPIDS=
trap 'kill -9 $VMPIDS 2>/dev/null; rm -rf "$TMP"' EXIT

# dropped NAME: $DROPPED, the output_dropped of VM NAME's --status (which
# must answer within 5 s, scaled); false if it did not
dropped() {
	DROPPED=
	bounded 5 "$CTL" --vm="$1" --rundir="$RUN" --timeout="$(tmo 5)" --status </dev/null \
		>"$TMP/$1.status" 2>"$TMP/$1.ctlerr" || return 1
	DROPPED=$(sed -n 's/^ *"output_dropped": \([0-9]*\),\{0,1\}$/\1/p' "$TMP/$1.status")
	[ -n "$DROPPED" ]
}

# dropping NAME PID: output_dropped of NAME is above 0 (for wait_until)
dropping() {
	running "$2" || return 2
	dropped "$1" && [ "$DROPPED" -gt 0 ]
}

# more NAME PID FIRST: output_dropped of NAME is above FIRST (for wait_until)
more() {
	running "$2" || return 2
	dropped "$1" && [ "$DROPPED" -gt "$3" ]
}

# confined NAME PID: PID has an output writer thread (khyve-*-out), and it,
# like every thread, runs under a seccomp filter (50-seccomp.sh)
confined() {
	local t st bad= writer=
	for t in /proc/$2/task/*; do
		st=$(cat "$t/status" 2>/dev/null) || continue
		grep -q '^Name:[[:space:]]*khyve-.*-out$' <<<"$st" && writer=1
		grep -q '^Seccomp:[[:space:]]*2$' <<<"$st" || bad="$bad $(sed -n 's/^Name:[[:space:]]*//p' <<<"$st")"
	done
	if [ -z "$writer" ]; then
		fail "stall-$1-confined" "no output writer thread (khyve-*-out)"
	elif [ -n "$bad" ]; then
		fail "stall-$1-confined" "threads without a filter:$bad"
	else
		pass "stall-$1-confined"
	fi
}

# stall NAME PID: the checks of one stalled VM
stall() {
	local name=$1 pid=$2 first rc
	if ! wait_socket "$RUN/$name.sock" "$pid" 10; then
		fail "stall-$name" "khyve did not answer --status: $(head -c 300 "$TMP/$name.err")"
		return
	fi
	if ! wait_until 60 dropping "$name" "$pid"; then
		fail "stall-$name-status" "no output_dropped > 0 within $(tmo 60) s: $(tr -d '\n' <"$TMP/$name.status" | head -c 300) $(head -c 300 "$TMP/$name.ctlerr") $(head -c 300 "$TMP/$name.err")"
	else
		first=$DROPPED
		# the guest runs on: more is dropped
		if wait_until 30 more "$name" "$pid" "$first"; then
			pass "stall-$name-status"
		else
			fail "stall-$name-status" "output_dropped stayed at $first: the guest does not run on ($(head -c 300 "$TMP/$name.ctlerr"))"
		fi
	fi
	bounded 30 "$CTL" --vm="$name" --rundir="$RUN" --timeout="$(tmo 30)" --checkpoint="$TMP/$name.cp" \
		</dev/null >"$TMP/$name.ctlout" 2>"$TMP/$name.ctlerr"
	rc=$?
	if [ $rc -eq 0 ] && [ -s "$TMP/$name.cp.state" ] && running "$pid" && dropped "$name"; then
		pass "stall-$name-checkpoint"
	else
		fail "stall-$name-checkpoint" "$(status_text $rc): $(head -c 300 "$TMP/$name.ctlerr") $(head -c 300 "$TMP/$name.err")"
	fi
	confined "$name" "$pid"
	kill -TERM "$pid" 2>/dev/null
	wait_bounded "$pid" 10
	rc=$?
	if [ $rc -ne 0 ] || sanitizer_report "$TMP/$name.err"; then
		fail "stall-$name-sigterm" "$(status_text $rc) after SIGTERM (want 0): $(head -c 300 "$TMP/$name.err")"
	else
		pass "stall-$name-sigterm"
	fi
}

# a FIFO held open for reading (by this shell, which never reads it)
mkfifo "$TMP/out.fifo"
exec {HOLD}<>"$TMP/out.fifo"

# (1) COM1 on standard output, a pipe nobody reads
"$KHYVE" --rundir "$RUN" -m 16M -l com1,stdio -k "$FIX/spew.elf" com1-pipe \
	</dev/null >"$TMP/out.fifo" 2>"$TMP/com1-pipe.err" &
pid=$!
VMPIDS="$VMPIDS $pid"
stall com1-pipe $pid

if ! have_guest; then
	fail stall-con "test guest not built"
	exit 0
fi
cmd="workload=console rounds=1000000"

# (2) virtio-console on standard output, a pipe nobody reads
"$KHYVE" --rundir "$RUN" -m 64M -l "com1,file:$TMP/con-pipe.out" -s 4,virtio-console,stdio \
	-k "$GUEST" -A "$cmd" con-pipe </dev/null >"$TMP/out.fifo" 2>"$TMP/con-pipe.err" &
pid=$!
VMPIDS="$VMPIDS $pid"
stall con-pipe $pid

# (3) virtio-console to a socket whose peer accepts and never reads
python3 -c '
import os, socket, sys, time
scale = int(os.environ.get("KHYVE_TIMEOUT_SCALE", "1"))
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1]); s.listen(1)
s.settimeout(60 * scale)
open(sys.argv[1] + ".ready", "w").close()
c, _ = s.accept()
time.sleep(300 * scale)	# never reads
' "$TMP/con.sock" 2>"$TMP/listener.err" &
lpid=$!
VMPIDS="$VMPIDS $lpid"
if wait_until 10 ready "$TMP/con.sock.ready" $lpid; then
	"$KHYVE" --rundir "$RUN" -m 64M -l "com1,file:$TMP/con-socket.out" -s 4,virtio-console,socket:$TMP/con.sock \
		-k "$GUEST" -A "$cmd" con-socket </dev/null >/dev/null 2>"$TMP/con-socket.err" &
	pid=$!
	VMPIDS="$VMPIDS $pid"
	stall con-socket $pid
else
	fail stall-con-socket "the listener did not start: $(head -c 300 "$TMP/listener.err")"
fi
kill $lpid 2>/dev/null
exec {HOLD}>&-
