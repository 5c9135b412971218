# Save and restore with the test guest: the central test of khyve.  A run
# checkpointed at random moments, and every checkpoint restored in a fresh
# process, must end with the host reference digest; so must suspend +
# restore, two clones of one checkpoint at once, and a restore chain.
. tests/lib.sh

CTL=$BUILD/khyvectl
RUN=$TMP/run
VMPIDS=
trap 'kill -9 $VMPIDS 2>/dev/null; wait 2>/dev/null; rm -rf "$TMP"' EXIT
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
	local name=$1 i
	shift
	"$KHYVE" --rundir "$RUN" -l "com1,file:$TMP/$name.out" "$@" "$name" \
		</dev/null >/dev/null 2>"$TMP/$name.err" &
	PID=$!
	VMPIDS="$VMPIDS $PID"
	for i in $(seq 200); do
		[ -S "$RUN/$name.sock" ] && return 0
		kill -0 $PID 2>/dev/null || return 1
		sleep 0.02
	done
	return 1
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
	timeout -k 5 60 "$CTL" --rundir="$RUN" "$@" </dev/null >"$TMP/ctl.out" 2>"$TMP/ctl.err"
}

# finish NAME PID WANT-DIGEST [WANT-STATUS]: wait for the VM; it must exit
# with status 1 (debug-exit 0 = guest PASS) and print the wanted digest.
finish() {
	local name=$1 pid=$2 want=$3 status=${4:-1} rc got
	wait "$pid"
	rc=$?
	got=$(guest_digest "$TMP/$name.out")
	if sanitizer_report "$TMP/$name.err"; then
		fail "$name" "sanitizer report: $(head -5 "$TMP/$name.err" | tr '\n' ' ')"
	elif [ $rc -ne "$status" ]; then
		fail "$name" "exit status $rc, want $status: $(tail -2 "$TMP/$name.out" | tr '\n' ' ') $(head -c 400 "$TMP/$name.err")"
	elif [ "$status" = 1 ] && [ "$got" != "$want" ]; then
		fail "$name" "digest '$got', reference '$want'"
	else
		pass "$name"
	fi
}

pause_random() { sleep "0.$((RANDOM % 4 + 1))$((RANDOM % 10))"; }

for ncpu in 1 2; do
	cmd="workload=mem,fpu,smp,time rounds=$((10 + 4 * ncpu)) memmb=16 seed=$((SEED + ncpu))"
	want=$(ref_digest $ncpu "$cmd")
	name=cp-${ncpu}cpu
	start $name -c $ncpu -m 128M -k "$GUEST" -A "$cmd" --debug-exit || { fail $name "did not start"; continue; }
	vm=$PID
	ok=0
	for i in 1 2 3 4 5; do
		pause_random
		if ctl --vm=$name --checkpoint="$TMP/$name.$i"; then
			ok=$((ok + 1))
		else
			echo "# checkpoint $i: $(cat "$TMP/ctl.err")"
		fi
	done
	[ $ok -eq 5 ] && pass "$name-5-checkpoints" || fail "$name-5-checkpoints" "$ok of 5 succeeded"
	finish "$name" $vm "$want"
	# each checkpoint, restored in a fresh process, finishes the same way
	for i in 1 2 3 4 5; do
		[ -e "$TMP/$name.$i.state" ] || continue
		restore "$name-r$i" "$TMP/$name.$i"
		finish "$name-r$i" $PID "$want"
		if grep -q "khyve-testguest: booting" "$TMP/$name-r$i.out"; then
			fail "$name-r$i-resumed" "the restored guest booted again"
		fi
	done
done

# suspend: exit status 5, then restore
cmd="workload=mem,fpu,smp,time rounds=12 memmb=16 seed=$SEED"
want=$(ref_digest 2 "$cmd")
start susp -c 2 -m 128M -k "$GUEST" -A "$cmd" --debug-exit && {
	vm=$PID
	pause_random
	ctl --vm=susp --suspend="$TMP/susp" || echo "# suspend: $(cat "$TMP/ctl.err")"
	wait $vm
	rc=$?
	[ $rc -eq 5 ] && pass suspend-exit-5 || fail suspend-exit-5 "exit status $rc: $(cat "$TMP/susp.err")"
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
	cmp -s "$TMP/clone-a.out" "$TMP/clone-b.out" && pass clones-same-output ||
		fail clones-same-output "the clones printed different things"

	# a chain: restore, checkpoint the restored VM, restore that
	"$KHYVE" --rundir "$RUN" -r "$TMP/susp" -l "com1,file:$TMP/chain1.out" chain1 </dev/null \
		>/dev/null 2>"$TMP/chain1.err" &
	c1=$!
	VMPIDS="$VMPIDS $c1"
	for i in $(seq 100); do [ -S "$RUN/chain1.sock" ] && break; sleep 0.02; done
	pause_random
	if ctl --vm=chain1 --suspend="$TMP/chain2"; then
		wait $c1
		restore chain2 "$TMP/chain2"
		finish chain2 $PID "$want"
	else
		fail chain2 "checkpoint of a restored VM failed: $(cat "$TMP/ctl.err")"
		kill $c1
	fi
}

# options with -r: what differs from the snapshot is refused by name; the
# COM1 backend may be overridden (it was, above)
if [ -e "$TMP/susp.state" ]; then
	expect_error restore-other-cpus "-c 4 differs from the snapshot's 2 vCPUs" -r "$TMP/susp" -c 4
	expect_error restore-other-memory "-m differs from the snapshot's 128 MiB" -r "$TMP/susp" -m 256M
	expect_error restore-other-kernel "differs from the snapshot's kernel" -r "$TMP/susp" -k "$FIX/ok.elf"
fi

# a 4 GiB guest that touches little gives a memory file about that big
cmd="workload=mem rounds=100000 memmb=64 seed=1"
if start big -c 1 -m 4G -k "$GUEST" -A "$cmd"; then
	vm=$PID
	for i in $(seq 500); do grep -q "^round 1" "$TMP/big.out" && break; sleep 0.02; done
	ctl --vm=big --checkpoint="$TMP/big" || echo "# big: $(cat "$TMP/ctl.err")"
	kill $vm
	wait $vm
	if [ -e "$TMP/big" ]; then
		alloc=$(( $(stat -c %b "$TMP/big") * $(stat -c %B "$TMP/big") ))
		data=$("$CTL" --inspect="$TMP/big" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["memory"]["data_bytes"])')
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
		fail sparse-memory-file "no snapshot was written"
	fi
else
	fail sparse-memory-file "VM did not start"
fi

exit 0
