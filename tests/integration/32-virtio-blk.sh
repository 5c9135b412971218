# virtio-blk: every bad -s (one line, status 4); the test guest's blk
# workload on 1 and 2 vCPUs, on io_uring and on the thread pool
# (KHYVE_BLK_NO_URING=1), with the reference digest and the disk the
# reference computes (core: 2 vCPUs on io_uring); checkpoints at random
# moments (random rounds) in heavy I/O, each
# restored in a fresh process (on the disk copy the snapshot carries, and on
# a copy made while paused, given with -s); suspend then restore on the same
# disk; a disk changed since the snapshot refused by name unless
# --force-disk; a disk in use by another VM refused.
. tests/lib.sh

CTL=$BUILD/khyvectl
RUN=$TMP/run
VMPIDS=
trap 'kill -9 $VMPIDS 2>/dev/null; rm -rf "$TMP"' EXIT

DISK=$TMP/disk.img
truncate -s 8M "$DISK"
mkdir -p "$TMP/dir"
K="-k $FIX/ok.elf"

expect_error blk-missing-image "virtio-blk: cannot open disk image '$TMP/none.img': No such file or directory" \
	-s 3,virtio-blk,$TMP/none.img $K vm1
expect_error blk-missing-image-ro "virtio-blk: cannot open disk image '$TMP/none.img': No such file or directory" \
	-s 3,virtio-blk,path=$TMP/none.img,ro $K vm1
expect_error blk-unknown-option "virtio-blk: unknown option 'fast'" -s 3,virtio-blk,$DISK,fast $K vm1
expect_error blk-unknown-option-kv "virtio-blk: unknown option 'sectorsize=4096'" \
	-s 3,virtio-blk,$DISK,sectorsize=4096 $K vm1
expect_error blk-no-image "virtio-blk needs a disk image: -s SLOT,virtio-blk,PATH[,ro][,serial=ID]" -s 3,virtio-blk $K vm1
expect_error blk-ro-no-image "virtio-blk needs a disk image" -s 3,virtio-blk,ro $K vm1
expect_error blk-ro-before-path "virtio-blk: unknown option '$DISK'" -s 3,virtio-blk,ro,$DISK $K vm1
expect_error blk-two-images "virtio-blk: more than one disk image" -s 3,virtio-blk,$DISK,path=$DISK $K vm1
expect_error blk-empty-option "virtio-blk: empty option" -s 3,virtio-blk,$DISK,,ro $K vm1
expect_error blk-long-serial "virtio-blk: serial '123456789012345678901' is longer than 20 bytes" \
	-s 3,virtio-blk,$DISK,serial=123456789012345678901 $K vm1
expect_error blk-directory "virtio-blk: cannot open disk image '$TMP/dir': Is a directory" -s 3,virtio-blk,$TMP/dir $K vm1
expect_error blk-directory-ro "virtio-blk: disk image '$TMP/dir' is not a regular file or a block device" \
	-s 3,virtio-blk,$TMP/dir,ro $K vm1
expect_error blk-char-device "virtio-blk: disk image '/dev/null' is not a regular file or a block device" \
	-s 3,virtio-blk,/dev/null $K vm1

# a VM with a disk and nothing to do with it: powers off cleanly
bounded 30 "$KHYVE" -s 3,virtio-blk,$DISK,ro,serial=x $K --debug-exit -l com1,null okvm </dev/null >/dev/null 2>"$TMP/ok.err"
rc=$?
[ $rc -eq 1 ] && [ ! -s "$TMP/ok.err" ] && pass blk-idle-vm ||
	fail blk-idle-vm "$(status_text $rc) (want 1, nothing on stderr): $(head -c 300 "$TMP/ok.err")"

if ! have_guest; then
	fail virtio-blk "test guest not built"
	exit 0
fi
if ! bounded 60 "$REF" --blk-image "workload=blk rounds=1" "$TMP/probe.ref" >/dev/null 2>"$TMP/probe.err"; then
	fail virtio-blk-guest "testguest-ref --blk-image failed: $(head -c 300 "$TMP/probe.err")"
	exit 0
fi
SEED=${KHYVE_TEST_SEED:-$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')}
RANDOM=$SEED
echo "# random moments from seed $SEED (KHYVE_TEST_SEED=$SEED to repeat)"

# check_disk NAME DISK CMDLINE: DISK holds what the workload leaves, the rest zeros
check_disk() {
	local name=$1 disk=$2 cmd=$3 mb
	mb=$(echo "$cmd" | sed -n 's/.*blkmb=\([0-9]*\).*/\1/p')
	bounded 120 "$REF" --blk-image "$cmd" "$TMP/$name.ref" || { fail "$name-disk" "testguest-ref --blk-image failed"; return; }
	if ! cmp -s -n $((mb << 20)) "$disk" "$TMP/$name.ref"; then
		fail "$name-disk" "disk differs from the reference: $(cmp -n $((mb << 20)) "$disk" "$TMP/$name.ref" 2>&1 | head -1)"
	elif ! cmp -s <(tail -c +$((mb * 1048576 + 1)) "$disk") <(head -c $(($(stat -c %s "$disk") - mb * 1048576)) /dev/zero); then
		fail "$name-disk" "bytes beyond blkmb=$mb MiB were written"
	else
		pass "$name-disk"
	fi
}

# run NAME WANT KHYVE-ARGS...: run to the end; status 1 and the wanted digest
run() {
	local name=$1 want=$2 rc
	shift 2
	bounded 300 "$KHYVE" --rundir "$RUN" -l "com1,file:$TMP/$name.out" --debug-exit "$@" \
		</dev/null >/dev/null 2>"$TMP/$name.err"
	rc=$?
	judge "$name" "$want" $rc
}

# io_uring on 2 vCPUs (core); full: also 1 vCPU, and the thread pool
for ncpu in $(by_set 2 "1 2"); do
	for backend in $(by_set uring "uring pool"); do
		name=blk-${ncpu}cpu-$backend
		cmd="workload=blk,smp rounds=$((6 + 2 * ncpu)) blkmb=4 seed=$((SEED + ncpu))"
		rm -f "$DISK"
		truncate -s 8M "$DISK"
		if [ $backend = pool ]; then
			KHYVE_BLK_NO_URING=1 run $name "$(ref_digest $ncpu "$cmd")" -c $ncpu -m 64M \
				-s 3,virtio-blk,$DISK -k "$GUEST" -A "$cmd" $name
		else
			run $name "$(ref_digest $ncpu "$cmd")" -c $ncpu -m 64M -s 3,virtio-blk,$DISK -k "$GUEST" -A "$cmd" $name
		fi
		check_disk $name "$DISK" "$cmd"
	done
done

ctl() {
	bounded 60 "$CTL" --rundir="$RUN" --timeout="$(tmo 60)" "$@" </dev/null >"$TMP/ctl.out" 2>"$TMP/ctl.err"
}

# restored NAME WANT DISK CMDLINE KHYVE-ARGS...: a restore runs to the end with
# the digest and leaves DISK as the reference says
restored() {
	local name=$1 want=$2 disk=$3 cmd=$4
	shift 4
	run "$name" "$want" "$@" "$name"
	check_disk "$name" "$disk" "$cmd"
}

# Checkpoints at random moments (random rounds), the VM running on: odd
# ones carry a copy of the disk (--disks), even ones pause, checkpoint, copy
# the disk with cp and resume, and are restored with -s naming the copy.
# The first one is restored at once, while its source holds the original.
# Core: 2 checkpoints on 2 vCPUs; full: 4, on 1 and 2.
NCP=$(by_set 2 4)
first=
for ncpu in $(by_set 2 "1 2"); do
	name=blkcp-${ncpu}cpu
	rounds=$(by_set 20 150)
	cmd="workload=blk,smp rounds=$rounds blkmb=8 seed=$((SEED + 11 * ncpu))"
	want=$(ref_digest $ncpu "$cmd")
	disk=$TMP/$name.img
	truncate -s 16M "$disk"
	"$KHYVE" --rundir "$RUN" -l "com1,file:$TMP/$name.out" -c $ncpu -m 64M -s 3,virtio-blk,$disk \
		-k "$GUEST" -A "$cmd" --debug-exit "$name" </dev/null >/dev/null 2>"$TMP/$name.err" &
	pid=$!
	VMPIDS="$VMPIDS $pid"
	wait_socket "$RUN/$name.sock" $pid 10
	if [ -z "$first" ]; then
		first=$name
		# one writer per disk
		expect_error blk-disk-in-use "virtio-blk: disk image '$disk' is in use by another process (locked)" \
			-s 3,virtio-blk,$disk $K vm2
	fi
	bad= early=
	pick_rounds $NCP 0 $((rounds / 2))
	for i in $(seq $NCP); do
		if [ $((i % 2)) -eq 1 ]; then
			if ! snap_at "$TMP/$name.out" "${PICKED[i - 1]}" $pid "$RUN/$name.sock" checkpoint "$TMP/$name.$i" disks; then
				bad="$bad $i ($SNAP_WHY);"
			elif [ $i -eq 1 ]; then
				# a clone while its source still holds (and locks) the
				# original disk: the restore must take the copy, never
				# open the original (it used to, and found it locked)
				restored "$name-r$i-source-alive" "$want" "$TMP/$name.$i.virtio-blk.3.disk" "$cmd" \
					-r "$TMP/$name.$i"
				early=$i
			fi
		elif ! snap_at "$TMP/$name.out" "${PICKED[i - 1]}" $pid "$RUN/$name.sock" pause; then
			bad="$bad $i ($SNAP_WHY);"
		else
			if ! ctl --vm=$name --checkpoint="$TMP/$name.$i"; then
				bad="$bad $i (paused, in round ${PICKED[i - 1]}: $(cat "$TMP/ctl.err"));"
			elif ! cp --sparse=always "$disk" "$TMP/$name.$i.cp"; then
				bad="$bad $i (cp of the disk failed);"
			fi
			ctl --vm=$name --resume || bad="$bad $i (--resume: $(cat "$TMP/ctl.err"));"
		fi
	done
	go $pid	# held after its last checkpoint
	wait_bounded $pid 300
	judge "$name" "$want" $?
	check_disk "$name" "$disk" "$cmd"
	cp_verdict "$name-checkpoints" $NCP "$bad"
	for i in $(seq $NCP); do
		if [ "$i" = "$early" ]; then
			continue	# restored above, while its source ran
		elif [ ! -e "$TMP/$name.$i.state" ]; then
			fail "$name-r$i" "checkpoint $i was not written"
		elif [ $((i % 2)) -eq 1 ]; then
			copy="$TMP/$name.$i.virtio-blk.3.disk"
			[ -e "$copy" ] || { fail "$name-r$i" "no disk copy $copy"; continue; }
			# the original moved on: the snapshot runs on its own copy
			restored "$name-r$i" "$want" "$copy" "$cmd" -r "$TMP/$name.$i"
		else
			restored "$name-r$i" "$want" "$TMP/$name.$i.cp" "$cmd" -r "$TMP/$name.$i" \
				-s 3,virtio-blk,$TMP/$name.$i.cp
		fi
	done
done

# The original disk moved on since checkpoint 2: refused by name, unless forced
snap=$TMP/$first.2
if [ -e "$snap.state" ]; then
	expect_error blk-restore-changed-disk \
		"disk $TMP/$first.img changed since the snapshot (modification time" \
		-r "$snap"
	# a copy of the wrong moment: the content differs
	cp "$TMP/$first.img" "$TMP/wrong.img"
	expect_error blk-restore-wrong-copy \
		"disk $TMP/wrong.img changed since the snapshot (content); use --force-disk to restore anyway" \
		-r "$snap" -s 3,virtio-blk,$TMP/wrong.img
	truncate -s 32M "$TMP/wrong.img"
	expect_error blk-restore-other-size "disk $TMP/wrong.img has 65536 sectors, the snapshot's had 32768" \
		-r "$snap" -s 3,virtio-blk,$TMP/wrong.img --force-disk
else
	fail blk-restore-changed-disk "no checkpoint $snap to restore (checkpoint 2 failed)"
fi

# Suspend in the middle of heavy I/O, then restore on the same disk; a
# touched disk is refused (and accepted with --force-disk), a cp accepted.
for ncpu in 1 2; do
	name=blksusp-${ncpu}cpu
	rounds=$(by_set 20 60)
	cmd="workload=blk,smp rounds=$rounds blkmb=8 seed=$((SEED + 23 * ncpu))"
	want=$(ref_digest $ncpu "$cmd")
	disk=$TMP/$name.img
	truncate -s 8M "$disk"
	# relative to where it started: a restore from elsewhere finds the disk by its recorded path
	(cd "$TMP" && exec "$KHYVE" --rundir "$RUN" -l "com1,file:$TMP/$name.out" -c $ncpu -m 64M \
		-s 3,virtio-blk,$name.img -k "$GUEST" -A "$cmd" --debug-exit "$name" \
		</dev/null >/dev/null 2>"$TMP/$name.err") &
	pid=$!
	VMPIDS="$VMPIDS $pid"
	wait_socket "$RUN/$name.sock" $pid 10
	pick_rounds 1 1 $((rounds / 2))
	snap_at "$TMP/$name.out" "${PICKED[0]}" $pid "$RUN/$name.sock" suspend "$TMP/$name" || echo "# suspend: $SNAP_WHY"
	wait_bounded $pid 300
	rc=$?
	if [ $rc -ne 5 ]; then
		fail "$name" "$(status_text $rc) after --suspend, want 5: $(tail -1 "$TMP/$name.out") $(head -c 300 "$TMP/$name.err")"
		continue
	fi
	pass "$name-suspended"
	cp --sparse=always "$disk" "$TMP/$name.cp"
	if [ $ncpu -eq 1 ]; then
		touch -d "+1 hour" "$disk"
		expect_error blk-restore-touched \
			"disk $disk changed since the snapshot (modification time); use --force-disk to restore anyway" -r "$TMP/$name"
		restored "$name-forced" "$want" "$disk" "$cmd" -r "$TMP/$name" --force-disk
	else
		restored "$name-r" "$want" "$disk" "$cmd" -r "$TMP/$name"
	fi
	restored "$name-cp" "$want" "$TMP/$name.cp" "$cmd" -r "$TMP/$name" -s 3,virtio-blk,$TMP/$name.cp
done
