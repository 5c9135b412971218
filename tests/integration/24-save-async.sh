# The main thread never waits for a save: while a checkpoint's memory
# writer runs (here: held stopped by the stop_writer.so shim, as long as
# the test likes), --status answers and says a save is in flight, a second
# save or a pause is refused at once, the checkpoint's own client gets its
# reply when the writer ends, and SIGTERM ends khyve promptly with no
# snapshot and no temporary file left.  Also: the halt check never stops
# a guest that runs (halt_check_pauses stays 0).
. tests/lib.sh

CTL=$BUILD/khyvectl
RUN=$TMP/run
SNAP=$TMP/snap
FLAG=$TMP/writer.pid
PID=
WPID=
cleanup() {
	[ -n "$WPID" ] && kill -9 "$WPID" 2>/dev/null
	[ -n "$PID" ] && kill -9 $PID 2>/dev/null && wait_bounded $PID 10
	rm -rf "$TMP"
}
trap cleanup EXIT
mkdir -p "$SNAP"

# a request that must be answered within a few seconds, save or no save
ctl() {
	bounded 10 "$CTL" --vm=vm --rundir="$RUN" --timeout="$(tmo 5)" "$@" </dev/null >"$TMP/ctl.out" 2>"$TMP/ctl.err"
}

# a long-running VM (echo.elf polls COM1 forever) whose memory writers stop
start() {
	rm -f "$RUN/vm.sock" "$FLAG"
	env LD_PRELOAD="$FIX/stop_writer.so" STOP_WRITER_FLAG="$FLAG" \
		ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0 \
		"$KHYVE" --rundir "$RUN" -m 64M -l com1,null -k "$FIX/echo.elf" vm \
		</dev/null >/dev/null 2>"$TMP/vm.err" &
	PID=$!
	wait_socket "$RUN/vm.sock" $PID 10
}

# save ACTION FILE: start khyvectl ACTION=FILE in the background (CPID) and
# wait for its memory writer to stop (WPID)
save() {
	rm -f "$FLAG"
	"$CTL" --vm=vm --rundir="$RUN" --timeout=0 --"$1"="$2" </dev/null >"$TMP/save.out" 2>"$TMP/save.err" &
	CPID=$!
	WPID=
	wait_until 20 ready "$FLAG" $PID && read -r WPID <"$FLAG"
	[ -n "$WPID" ]
}

start || { fail start "VM did not start: $(cat "$TMP/vm.err")"; exit 0; }

# halt check: a guest that computes is never stopped to look
nap 5
if ctl --status && grep -q '"halt_check_pauses": *0[,}]' "$TMP/ctl.out"; then
	pass no-halt-check-pauses
else
	fail no-halt-check-pauses "want halt_check_pauses 0 after 5 s: $(cat "$TMP/ctl.out" "$TMP/ctl.err" | tr '\n' ' ')"
fi

if ! save checkpoint "$SNAP/a"; then
	fail writer-stopped "no memory writer showed up: $(cat "$TMP/save.err" "$TMP/vm.err" | tr '\n' ' ')"
	exit 0
fi

# --status answers while the save is in flight, and says so
ctl --status
rc=$?
if [ $rc -eq 0 ] && python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))["save"]
sys.exit(0 if s["cmd"] == "checkpoint" and s["file"] == sys.argv[2] and s["total"] == 64 << 20 else 1)
' "$TMP/ctl.out" "$SNAP/a" 2>/dev/null; then
	pass status-during-save
else
	fail status-during-save "$(status_text $rc): $(cat "$TMP/ctl.out" "$TMP/ctl.err" | tr '\n' ' ')"
	exit 0	# a khyve that waits for its writer answers nothing below either
fi

# a second save, or a pause, is refused at once with a reason
for a in --checkpoint="$SNAP/b" --suspend="$SNAP/b" --pause; do
	ctl "$a"
	rc=$?
	if [ $rc -eq 1 ] && grep -q "a save is in progress" "$TMP/ctl.err"; then
		pass "refused ${a%%=*}"
	else
		fail "refused ${a%%=*}" "$(status_text $rc): $(cat "$TMP/ctl.err" | tr '\n' ' ')"
	fi
done

# the writer goes on: the checkpoint's client gets its reply, the snapshot is whole
kill -CONT "$WPID"
wait_bounded $CPID 30
rc=$?
WPID=
if [ $rc -eq 0 ] && bounded 30 "$CTL" --inspect="$SNAP/a" >/dev/null 2>&1; then
	pass reply-at-end
else
	fail reply-at-end "$(status_text $rc): $(cat "$TMP/save.out" "$TMP/save.err" | tr '\n' ' ')"
fi
if ctl --status && grep -q '"save": *null' "$TMP/ctl.out"; then
	pass status-after-save
else
	fail status-after-save "$(cat "$TMP/ctl.out" "$TMP/ctl.err" | tr '\n' ' ')"
fi

# SIGTERM during a save: khyve ends at once, the save's files are removed
if save checkpoint "$SNAP/c"; then
	kill -TERM $PID
	wait_bounded $PID 20
	rc=$?
	PID=
	left=$(ls -A "$SNAP" | grep -v -x -e a -e a.state)
	if [ $rc -eq 0 ] && [ -z "$left" ]; then
		pass sigterm-during-save
	else
		fail sigterm-during-save "$(status_text $rc), files left: '$left': $(tail -3 "$TMP/vm.err" | tr '\n' ' ')"
	fi
	wait_bounded $CPID 20
	rc=$?
	if [ $rc -eq 1 ] && [ -s "$TMP/save.err" ]; then
		pass sigterm-client-told
	else
		fail sigterm-client-told "khyvectl: $(status_text $rc): $(cat "$TMP/save.err")"
	fi
	kill -9 "$WPID" 2>/dev/null
	WPID=
else
	fail sigterm-during-save "no memory writer showed up: $(cat "$TMP/save.err" | tr '\n' ' ')"
fi

# a suspend: the VM stays paused while its writer runs, --status answers,
# and khyve exits with status 5 once the writer is done
start || { fail start2 "VM did not start: $(cat "$TMP/vm.err")"; exit 0; }
if save suspend "$SNAP/d"; then
	if ctl --status && grep -q '"cmd": *"suspend"' "$TMP/ctl.out"; then
		pass status-during-suspend
	else
		fail status-during-suspend "$(cat "$TMP/ctl.out" "$TMP/ctl.err" | tr '\n' ' ')"
	fi
	kill -CONT "$WPID"
	WPID=
	wait_bounded $PID 30
	rc=$?
	PID=
	wait_bounded $CPID 20
	crc=$?
	if [ $rc -eq 5 ] && [ $crc -eq 0 ] && bounded 30 "$CTL" --inspect="$SNAP/d" >/dev/null 2>&1; then
		pass suspend-exit-5
	else
		fail suspend-exit-5 "khyve $(status_text $rc), khyvectl $crc: $(cat "$TMP/save.err") $(tail -3 "$TMP/vm.err" | tr '\n' ' ')"
	fi
else
	fail status-during-suspend "no memory writer showed up: $(cat "$TMP/save.err" | tr '\n' ' ')"
fi
