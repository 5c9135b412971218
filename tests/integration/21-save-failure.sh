# A save that fails (no space, read-only directory, a write error, a bad
# path) reports the error to khyvectl, leaves the VM running - also for
# --suspend - and leaves neither a half snapshot nor a damaged older one.
. tests/lib.sh

CTL=$BUILD/khyvectl
RUN=$TMP/run
PID=
MOUNTS=
cleanup() {
	[ -n "$PID" ] && kill -9 $PID 2>/dev/null && wait_bounded $PID 10
	for m in $MOUNTS; do umount -l "$m" 2>/dev/null; done
	rm -rf "$TMP"
}
trap cleanup EXIT

ctl() {
	bounded 60 "$CTL" --rundir="$RUN" --timeout="$(tmo 60)" "$@" </dev/null >"$TMP/ctl.out" 2>"$TMP/ctl.err"
}

# a long-running VM (echo.elf waits for input forever); optional env first
start() {
	rm -f "$RUN/vm.sock"
	env "$@" "$KHYVE" --rundir "$RUN" -m 16M -l com1,null -k "$FIX/echo.elf" vm \
		</dev/null >/dev/null 2>"$TMP/vm.err" &
	PID=$!
	wait_socket "$RUN/vm.sock" $PID 10
}

# stop CHECK: SIGTERM ends the VM with status 0 within 20 s (a FAIL of
# CHECK otherwise)
stop() {
	local rc
	kill -TERM $PID
	wait_bounded $PID 20
	rc=$?
	[ $rc -eq 0 ] || fail "$1" "VM: $(status_text $rc) after SIGTERM, want 0: $(head -c 300 "$TMP/vm.err")"
	PID=
}

uuid_of() { bounded 30 "$CTL" --inspect="$1" --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["uuid"])'; }

# failed NAME DIR FILE OLD-UUID: the last khyvectl call must have failed with
# a message, the VM must still answer, the old snapshot (if any) must still
# be whole and the same, and DIR must hold nothing new.
failed() {
	local name=$1 dir=$2 file=$3 old=$4 extra
	if [ -z "$(cat "$TMP/ctl.err")" ] || ! grep -q '^khyvectl: ' "$TMP/ctl.err"; then
		fail "$name" "khyvectl gave no error message"
		return
	fi
	echo "# $name: $(cat "$TMP/ctl.err")"
	if ! ctl --vm=vm --status || ! grep -q '"running"' "$TMP/ctl.out"; then
		fail "$name" "the VM is not running any more"
		return
	fi
	if [ -n "$old" ] && [ "$(uuid_of "$file")" != "$old" ]; then
		fail "$name" "the older snapshot at $file is gone or damaged"
		return
	fi
	extra=$(ls -A "$dir" | grep -v -x -e "$(basename "$file")" -e "$(basename "$file").state" -e filler)
	if [ -n "$extra" ]; then
		fail "$name" "stray files left: $extra"
		return
	fi
	pass "$name"
}

can_mount=no
if [ "$(id -u)" -eq 0 ] && mkdir -p "$TMP/probe" && mount -t tmpfs -o size=1M none "$TMP/probe" 2>/dev/null; then
	umount "$TMP/probe"
	can_mount=yes
fi

start || { fail start "VM did not start: $(cat "$TMP/vm.err")"; exit 0; }

# no space: a first snapshot fits, then the filesystem is filled up
if [ $can_mount = yes ]; then
	mkdir -p "$TMP/small"
	mount -t tmpfs -o size=2M none "$TMP/small" && MOUNTS="$MOUNTS $TMP/small"
	if ctl --vm=vm --checkpoint="$TMP/small/snap"; then
		old=$(uuid_of "$TMP/small/snap")
		dd if=/dev/zero of="$TMP/small/filler" bs=64k 2>/dev/null
		ctl --vm=vm --checkpoint="$TMP/small/snap" && fail no-space "checkpoint succeeded on a full filesystem" ||
			failed no-space "$TMP/small" "$TMP/small/snap" "$old"
		ctl --vm=vm --suspend="$TMP/small/snap" && fail no-space-suspend "suspend succeeded on a full filesystem" ||
			failed no-space-suspend "$TMP/small" "$TMP/small/snap" "$old"
		rm -f "$TMP/small/filler"
	else
		fail no-space "first checkpoint failed: $(cat "$TMP/ctl.err")"
	fi

	# read-only directory (root ignores permission bits, so remount read-only)
	mkdir -p "$TMP/ro"
	mount -t tmpfs -o size=8M none "$TMP/ro" && MOUNTS="$MOUNTS $TMP/ro"
	if ctl --vm=vm --checkpoint="$TMP/ro/snap" && mount -o remount,ro "$TMP/ro"; then
		old=$(uuid_of "$TMP/ro/snap")
		ctl --vm=vm --checkpoint="$TMP/ro/snap" && fail read-only-dir "checkpoint succeeded" ||
			failed read-only-dir "$TMP/ro" "$TMP/ro/snap" "$old"
	else
		fail read-only-dir "set-up failed: $(cat "$TMP/ctl.err")"
	fi
else
	skip no-space "needs root to mount a small tmpfs"
	skip read-only-dir "needs root to mount a tmpfs"
fi

# a directory that does not exist, and a path that is a directory
mkdir -p "$TMP/bad/adir"
ctl --vm=vm --checkpoint="$TMP/bad/nonexistent/snap" && fail missing-dir "checkpoint succeeded" ||
	failed missing-dir "$TMP/bad" "$TMP/bad/adir" ""
ctl --vm=vm --checkpoint="$TMP/bad/adir" && fail path-is-dir "checkpoint succeeded" ||
	failed path-is-dir "$TMP/bad" "$TMP/bad/adir" ""

# an injected write error at every point of the save: the 1st, 2nd, ... write
mkdir -p "$TMP/inj"
ctl --vm=vm --checkpoint="$TMP/inj/snap" || fail inject-setup "$(cat "$TMP/ctl.err")"
old=$(uuid_of "$TMP/inj/snap")
stop inject-setup
# writes 1 and 2 are both guest memory, 3 the memory file's trailer, 4 the
# state file: core leaves out the second memory write
for n in $(by_set "1 3 4" "1 2 3 4"); do
	if ! start KHYVE_FAULT_SAVE_WRITE=$n; then
		fail "write-error-$n" "VM did not start: $(head -c 300 "$TMP/vm.err")"
		kill -9 $PID 2>/dev/null
		wait_bounded $PID 10
		continue
	fi
	ctl --vm=vm --checkpoint="$TMP/inj/snap" && fail "write-error-$n" "checkpoint succeeded" ||
		failed "write-error-$n" "$TMP/inj" "$TMP/inj/snap" "$old"
	ctl --vm=vm --suspend="$TMP/inj/snap" && fail "write-error-$n-suspend" "suspend succeeded" ||
		failed "write-error-$n-suspend" "$TMP/inj" "$TMP/inj/snap" "$old"
	stop "write-error-$n-exit"
	if sanitizer_report "$TMP/vm.err"; then fail "write-error-$n-asan" "$(head -5 "$TMP/vm.err")"; fi
done


# the forked memory writer dies (as if OOM-killed): the checkpoint fails
# cleanly and the VM, the older snapshot and the directory are as before
start KHYVE_FAULT_WRITER_KILL=1 || fail writer-killed "VM did not start: $(head -c 300 "$TMP/vm.err")"
if ctl --vm=vm --checkpoint="$TMP/inj/snap"; then
	fail writer-killed "checkpoint succeeded"
else
	grep -q "memory writer process died (signal 9)" "$TMP/ctl.err" && pass writer-killed-message ||
		fail writer-killed-message "$(cat "$TMP/ctl.err")"
	failed writer-killed "$TMP/inj" "$TMP/inj/snap" "$old"
fi
stop writer-killed-exit
exit 0
