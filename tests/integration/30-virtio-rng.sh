# PCI and virtio-rnd: -s errors (one line, status 4); the test guest's rng
# workload (its ring-3 virtio-pci driver) on 1 and 2 vCPUs with the host
# reference digest; checkpoints at random moments (random rounds), each
# restored in a fresh process, finish with the same digest; -s on restore
# must match.
. tests/lib.sh

CTL=$BUILD/khyvectl
RUN=$TMP/run
VMPIDS=
trap 'kill -9 $VMPIDS 2>/dev/null; rm -rf "$TMP"' EXIT

expect_error slot-too-big "invalid -s '32,virtio-rnd': slot must be 0-31" -s 32,virtio-rnd -k "$FIX/ok.elf" vm1
expect_error func-too-big "invalid -s '3:8,virtio-rnd'" -s 3:8,virtio-rnd -k "$FIX/ok.elf" vm1
expect_error slot-not-number "invalid -s 'x,virtio-rnd'" -s x,virtio-rnd -k "$FIX/ok.elf" vm1
expect_error slot-no-device "expected SLOT[:FUNC],DEVICE[,OPTIONS]" -s 3 -k "$FIX/ok.elf" vm1
expect_error slot-duplicate "duplicate PCI slot 3:0" -s 3,virtio-rnd -s 3:0,virtio-rnd -k "$FIX/ok.elf" vm1
expect_error slot-unknown-device "unknown PCI device 'virtio-foo'" -s 4,virtio-foo -k "$FIX/ok.elf" vm1
expect_error slot-unknown-option "virtio-rnd takes no options, got 'fast'" -s 4,virtio-rnd,fast -k "$FIX/ok.elf" vm1
expect_error slot-0-taken "slot 0 function 0 is the host bridge" -s 0,virtio-rnd -k "$FIX/ok.elf" vm1
expect_error slot-no-func0 "slot 5 has no function 0" -s 5:2,virtio-rnd -k "$FIX/ok.elf" vm1

if ! have_guest; then
	fail virtio-rng "test guest not built"
	exit 0
fi
SEED=${KHYVE_TEST_SEED:-$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')}
RANDOM=$SEED
echo "# random moments from seed $SEED (KHYVE_TEST_SEED=$SEED to repeat)"

# vm NAME WANT KHYVE-ARGS...: run to the end; status 1 and the wanted digest
vm() {
	local name=$1 want=$2 rc
	shift 2
	bounded 300 "$KHYVE" --rundir "$RUN" -l "com1,file:$TMP/$name.out" --debug-exit "$@" "$name" \
		</dev/null >/dev/null 2>"$TMP/$name.err"
	rc=$?
	judge "$name" "$want" $rc
}

# 2 vCPUs (core), and 1 (full)
for ncpu in $(by_set 2 "1 2"); do
	cmd="workload=rng,smp rounds=$(by_set 20 50) seed=$((SEED + ncpu))"
	vm rng-${ncpu}cpu "$(ref_digest $ncpu "$cmd")" -c $ncpu -m 64M -s 3,virtio-rnd -k "$GUEST" -A "$cmd"
done
# two functions in one slot, the guest takes the first it finds
cmd="workload=rng rounds=$(by_set 10 20)"
vm rng-multifunction "$(ref_digest 1 "$cmd")" -m 64M -s 0,hostbridge -s 6,virtio-rnd -s 6:1,virtio-rnd \
	-k "$GUEST" -A "$cmd"
# without the device the guest says so
bounded 60 "$KHYVE" -m 64M -k "$GUEST" -A "workload=rng rounds=2" --debug-exit \
	-l "com1,file:$TMP/nodev.out" nodev </dev/null >/dev/null 2>&1
rc=$?
grep -q "FAIL cpu 0: rng: no virtio-rnd PCI device" "$TMP/nodev.out" && [ $rc -eq 3 ] && pass rng-no-device ||
	fail rng-no-device "$(status_text $rc) (want 3 and 'rng: no virtio-rnd PCI device'): $(tail -1 "$TMP/nodev.out")"

# checkpoints at random moments (core: 2 on 2 vCPUs; full: 4 on 1 and 2)
ctl() {
	bounded 60 "$CTL" --rundir="$RUN" --timeout="$(tmo 60)" "$@" </dev/null >"$TMP/ctl.out" 2>"$TMP/ctl.err"
}
NCP=$(by_set 2 4)
for ncpu in $(by_set 2 "1 2"); do
	rounds=$(by_set 12 $((10 + 4 * ncpu)))
	cmd="workload=rng,fpu,smp rounds=$rounds seed=$((SEED + 7 * ncpu))$FPUITERS"
	want=$(ref_digest $ncpu "$cmd")
	name=rngcp-${ncpu}cpu
	"$KHYVE" --rundir "$RUN" -l "com1,file:$TMP/$name.out" -c $ncpu -m 64M -s 3,virtio-rnd \
		-k "$GUEST" -A "$cmd" --debug-exit "$name" </dev/null >/dev/null 2>"$TMP/$name.err" &
	pid=$!
	VMPIDS="$VMPIDS $pid"
	wait_socket "$RUN/$name.sock" $pid 10
	bad=
	pick_rounds $NCP 0 $((rounds / 3))	# then at least 2/3 of the run: an idle host does a round in 5 ms
	for i in $(seq $NCP); do
		snap_at "$TMP/$name.out" "${PICKED[i - 1]}" $pid "$RUN/$name.sock" checkpoint "$TMP/$name.$i" ||
			bad="$bad $i ($SNAP_WHY);"
	done
	go $pid	# held after its last checkpoint
	wait_bounded $pid 300
	judge "$name" "$want" $?
	cp_verdict "$name-checkpoints" $NCP "$bad"
	for i in $(seq $NCP); do
		if [ ! -e "$TMP/$name.$i.state" ]; then
			fail "$name-r$i" "checkpoint $i was not written"
			continue
		fi
		if ! bounded 30 "$CTL" --inspect="$TMP/$name.$i" 2>&1 | grep -q "virtio-rnd.3 .* ok"; then
			fail "$name-r$i-section" "no section virtio-rnd.3 in the snapshot"
		fi
		bounded 300 "$KHYVE" --rundir "$RUN" -r "$TMP/$name.$i" -l "com1,file:$TMP/$name-r$i.out" "$name-r$i" \
			</dev/null >/dev/null 2>"$TMP/$name-r$i.err"
		judge "$name-r$i" "$want" $?
	done
done

# -s given with -r must be the snapshot's
snap=$TMP/rngcp-2cpu.1
if [ -e "$snap.state" ]; then
	expect_error restore-other-slots "only their options may change; it gives 4:virtio-rnd" -r "$snap" -s 4,virtio-rnd r1
	bounded 120 "$KHYVE" --rundir "$RUN" -r "$snap" -s 3,virtio-rnd -l "com1,file:$TMP/same.out" same \
		</dev/null >/dev/null 2>"$TMP/same.err"
	rc=$?
	[ $rc -eq 1 ] && pass restore-same-slots || fail restore-same-slots "$(status_text $rc), want 1: $(head -c 300 "$TMP/same.err")"
else
	fail restore-slots "no checkpoint $snap to restore with -s (checkpoint 1 failed)"
fi
