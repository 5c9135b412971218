# Save and restore with the test guest: the central test of khyve.  A run
# checkpointed at random moments, and every checkpoint restored in a fresh
# process, must end with the host reference digest; so must suspend +
# restore, two clones of one checkpoint at once, and a restore chain.  The
# moments are random rounds of the guest (and a random few ms into them).
. tests/lib.sh

CTL=$BUILD/khyvectl
RUN=$TMP/run
VMPIDS=
trap 'kill -9 $VMPIDS 2>/dev/null; rm -rf "$TMP"' EXIT
if ! have_guest; then
	fail snapshot "test guest not built"
	exit 0
fi
SEED=${KHYVE_TEST_SEED:-$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')}
RANDOM=$SEED
echo "# random moments from seed $SEED (KHYVE_TEST_SEED=$SEED to repeat)"

# start NAME KHYVE-ARGS...: run khyve in the background ($PID), COM1 to
# $TMP/NAME.out; wait until its control socket is up.
start() {
	local name=$1
	shift
	"$KHYVE" --rundir "$RUN" -l "com1,file:$TMP/$name.out" "$@" "$name" \
		</dev/null >/dev/null 2>"$TMP/$name.err" &
	PID=$!
	VMPIDS="$VMPIDS $PID"
	wait_socket "$RUN/$name.sock" $PID 10
}

# restore NAME FILE: khyve -r FILE in the background ($PID), COM1 appended
# to $TMP/NAME.out (so the output before the checkpoint is not there)
restore() {
	local name=$1 file=$2
	"$KHYVE" --rundir "$RUN" -r "$file" -l "com1,file:$TMP/$name.out" "$name" \
		</dev/null >/dev/null 2>"$TMP/$name.err" &
	PID=$!
	VMPIDS="$VMPIDS $PID"
}

ctl() {
	bounded 60 "$CTL" --rundir="$RUN" --timeout="$(tmo 60)" "$@" </dev/null >"$TMP/ctl.out" 2>"$TMP/ctl.err"
}

# finish NAME PID WANT-DIGEST [WANT-STATUS]: wait for the VM (at most 300 s);
# it must exit with status 1 (debug-exit 0 = guest PASS) and print the
# wanted digest.
finish() {
	local name=$1 pid=$2 want=$3 status=${4:-1} rc got
	wait_bounded "$pid" 300
	rc=$?
	got=$(guest_digest "$TMP/$name.out")
	if sanitizer_report "$TMP/$name.err"; then
		fail "$name" "sanitizer report: $(head -5 "$TMP/$name.err" | tr '\n' ' ')"
	elif [ $rc -ne "$status" ]; then
		fail "$name" "$(status_text $rc), want $status: $(tail -2 "$TMP/$name.out" | tr '\n' ' ') $(head -c 400 "$TMP/$name.err")"
	elif [ "$status" = 1 ] && [ -z "$want" ]; then
		fail "$name" "no reference digest (testguest-ref failed)"
	elif [ "$status" = 1 ] && [ "$got" != "$want" ]; then
		fail "$name" "digest '$got', reference '$want'"
	else
		pass "$name"
	fi
}

# A run checkpointed at random moments (core: 2 checkpoints on 2 vCPUs;
# full: 5, on 1 and 2 vCPUs), each checkpoint restored in a fresh process
NCP=$(by_set 2 5)
for ncpu in $(by_set 2 "1 2"); do
	rounds=$(by_set 8 $((10 + 4 * ncpu)))
	cmd="workload=mem,fpu,smp,time rounds=$rounds memmb=$(by_set 4 16) seed=$((SEED + ncpu))$FPUITERS"
	want=$(ref_digest $ncpu "$cmd")
	name=cp-${ncpu}cpu
	start $name -c $ncpu -m 128M -k "$GUEST" -A "$cmd" --debug-exit ||
		{ fail $name "did not start: $(head -c 300 "$TMP/$name.err")"; continue; }
	vm=$PID
	bad=
	pick_rounds $NCP 0 $((rounds / 2 - 1))	# the second half: time for the last save
	for i in $(seq $NCP); do
		snap_at "$TMP/$name.out" "${PICKED[i - 1]}" $vm "$RUN/$name.sock" checkpoint "$TMP/$name.$i" ||
			bad="$bad $i ($SNAP_WHY);"
	done
	go $vm	# held after its last checkpoint
	cp_verdict "$name-checkpoints" $NCP "$bad"
	finish "$name" $vm "$want"
	# each checkpoint, restored in a fresh process, finishes the same way
	for i in $(seq $NCP); do
		if [ ! -e "$TMP/$name.$i.state" ]; then
			fail "$name-r$i" "checkpoint $i was not written"
			continue
		fi
		restore "$name-r$i" "$TMP/$name.$i"
		finish "$name-r$i" $PID "$want"
		if grep -q "khyve-testguest: booting" "$TMP/$name-r$i.out"; then
			fail "$name-r$i-resumed" "the restored guest booted again"
		fi
	done
done

# suspend: exit status 5, then restore (half the rounds left for the chain)
rounds=$(by_set 8 12)
cmd="workload=mem,fpu,smp,time rounds=$rounds memmb=$(by_set 4 16) seed=$SEED$FPUITERS"
want=$(ref_digest 2 "$cmd")
if start susp -c 2 -m 128M -k "$GUEST" -A "$cmd" --debug-exit; then
	vm=$PID
	pick_rounds 1 0 $((rounds / 2 - 1))
	snap_at "$TMP/susp.out" "${PICKED[0]}" $vm "$RUN/susp.sock" suspend "$TMP/susp" || echo "# suspend: $SNAP_WHY"
	wait_bounded $vm 300
	rc=$?
	[ $rc -eq 5 ] && pass suspend-exit-5 || fail suspend-exit-5 "$(status_text $rc), want 5: $(cat "$TMP/susp.err")"
	[ -e "$RUN/susp.sock" ] && fail suspend-socket-removed "socket left behind" || pass suspend-socket-removed
	restore susp-r "$TMP/susp"
	finish susp-r $PID "$want"

	# two clones of one snapshot at the same time, each with its own name
	restore clone-a "$TMP/susp"
	a=$PID
	restore clone-b "$TMP/susp"
	b=$PID
	finish clone-a $a "$want"
	finish clone-b $b "$want"
	if cmp -s "$TMP/clone-a.out" "$TMP/clone-b.out"; then
		pass clones-same-output
	else
		fail clones-same-output "the clones printed different things: $(cmp "$TMP/clone-a.out" "$TMP/clone-b.out" 2>&1 | head -1); $(diff "$TMP/clone-a.out" "$TMP/clone-b.out" | head -6 | tr '\n' '|')"
	fi

	# a chain: restore, suspend the restored VM in its next round, restore that
	restore chain1 "$TMP/susp"
	c1=$PID
	if ! wait_socket "$RUN/chain1.sock" $c1 10; then
		fail chain2 "the restored VM made no control socket: $(head -c 300 "$TMP/chain1.err")"
	elif snap_at "$TMP/chain1.out" any $c1 "$RUN/chain1.sock" suspend "$TMP/chain2"; then
		wait_bounded $c1 60
		restore chain2 "$TMP/chain2"
		finish chain2 $PID "$want"
	else
		fail chain2 "suspending a restored VM failed: $SNAP_WHY"
	fi
	kill $c1 2>/dev/null
	wait_bounded $c1 30
else
	fail suspend-exit-5 "did not start: $(head -c 300 "$TMP/susp.err")"
fi

# options with -r: what differs from the snapshot is refused by name; the
# COM1 backend may be overridden (it was, above)
if [ -e "$TMP/susp.state" ]; then
	expect_error restore-other-cpus "-c 4 differs from the snapshot's 2 vCPUs" -r "$TMP/susp" -c 4
	expect_error restore-other-memory "-m differs from the snapshot's 128 MiB" -r "$TMP/susp" -m 256M
	expect_error restore-other-kernel "differs from the snapshot's kernel" -r "$TMP/susp" -k "$FIX/ok.elf"
else
	fail restore-other-options "no snapshot $TMP/susp to restore with other options (the suspend failed)"
fi

# a 4 GiB guest that touches little gives a memory file about that big
cmd="workload=mem rounds=100000 memmb=64 seed=1"
if start big -c 1 -m 4G -k "$GUEST" -A "$cmd"; then
	vm=$PID
	wait_line "$TMP/big.out" "^round 1" $vm 10
	ctl --vm=big --checkpoint="$TMP/big" || echo "# big: $(cat "$TMP/ctl.err")"
	kill $vm
	wait_bounded $vm 30
	if [ -e "$TMP/big" ]; then
		alloc=$(( $(stat -c %b "$TMP/big") * $(stat -c %B "$TMP/big") ))
		data=$(bounded 30 "$CTL" --inspect="$TMP/big" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["memory"]["data_bytes"])')
		size=$(stat -c %s "$TMP/big")
		if [ "$size" -ne $(( (4 << 30) + 4096 )) ]; then
			fail sparse-memory-file "file size $size"
		elif [ "$alloc" -le $(( data + data / 20 + (1 << 20) )) ] && [ "$data" -lt $((100 << 20)) ] &&
		     [ "$data" -gt $((64 << 20)) ]; then
			pass sparse-memory-file
		else
			fail sparse-memory-file "allocated $alloc bytes for $data bytes of data"
		fi
	else
		fail sparse-memory-file "no snapshot was written: $(cat "$TMP/ctl.err")"
	fi
else
	fail sparse-memory-file "VM did not start: $(head -c 300 "$TMP/big.err")"
fi

exit 0
