# seccomp-bpf (docs/khyve.8, SECCOMP): every thread of a running VM with
# three virtio functions (their I/O threads, virtio-blk's pool workers) and
# of a VM restored from its checkpoint reports Seccomp: 2 and NoNewPrivs: 1,
# and --no-seccomp confines none; --status, a checkpoint with --disks, pause,
# resume and SIGTERM work confined; a forbidden call (unshare, made by the
# LD_PRELOAD shim tests/fixtures/forbid_call.c in renameat, which the main
# thread calls at the end of a checkpoint) ends khyve with status 4 and one
# line naming it, and without seccomp the same call comes back; the
# checkpoint's memory writer has a narrower list of its own (a call on the
# main list but not on its own ends the writer, and the checkpoint fails
# with khyve running on); a guest
# doing disk and entropy I/O on 2 vCPUs is checkpointed, and it and its
# restore end with the reference digest.
. tests/lib.sh

CTL=$BUILD/khyvectl
RUN=$TMP/run
VMPIDS=
trap 'kill -9 $VMPIDS 2>/dev/null; rm -rf "$TMP"' EXIT
PRELOAD_ASAN=ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0

# what this shell runs under: a --no-seccomp khyve inherits it
BASE_SECCOMP=$(sed -n 's/^Seccomp:[[:space:]]*//p' /proc/$$/status)

ctl() {
	bounded 60 "$CTL" --rundir="$RUN" --timeout="$(tmo 60)" "$@" </dev/null >"$TMP/ctl.out" 2>"$TMP/ctl.err"
}

# start NAME [ENV=V...] -- KHYVE-ARGS...: an idle VM in the background
# (echo.elf waits for COM1 input forever) with virtio-blk on its thread
# pool, virtio-rnd and virtio-console; $PID, false unless it answers
# --status within 10 s (scaled)
start() {
	local name=$1
	shift
	local envs=()
	while [ "$1" != -- ]; do
		envs+=("$1")
		shift
	done
	shift
	[ -e "$TMP/$name.img" ] || truncate -s 8M "$TMP/$name.img"
	env KHYVE_BLK_NO_URING=1 "${envs[@]}" "$KHYVE" --rundir "$RUN" -m 16M -l com1,null \
		-k "$FIX/echo.elf" -s 3,virtio-blk,$TMP/$name.img -s 4,virtio-rnd \
		-s 5,virtio-console,file:$TMP/$name.con "$@" "$name" </dev/null >/dev/null 2>"$TMP/$name.err" &
	PID=$!
	VMPIDS="$VMPIDS $PID"
	wait_socket "$RUN/$name.sock" $PID 10
}

# threads PID SECCOMP [NNP]: $NTHREADS, the threads of PID; $BAD, those
# whose Seccomp (and NoNewPrivs, if given) differ.  Threads the kernel
# runs in the process on its own behalf (PF_USER_WORKER: KVM's
# kvm-nx-lpage-recovery since Linux 6.13, io_uring's workers) are not
# khyve's and are left out; they never return to user space.
threads() {
	local t st flags
	NTHREADS=0 BAD=
	for t in /proc/$1/task/*; do
		flags=$(sed 's/.*) //' "$t/stat" 2>/dev/null | cut -d' ' -f7) || continue
		[ -n "$flags" ] && [ $((flags & 0x4000)) -ne 0 ] && continue
		st=$(cat "$t/status" 2>/dev/null) || continue
		NTHREADS=$((NTHREADS + 1))
		if ! grep -q "^Seccomp:[[:space:]]*$2\$" <<<"$st" ||
			{ [ -n "${3:-}" ] && ! grep -q "^NoNewPrivs:[[:space:]]*$3\$" <<<"$st"; }; then
			BAD="$BAD ${t##*/}:$(grep -E '^(Name|Seccomp|NoNewPrivs):' <<<"$st" | tr -s '\t\n' '  ')"
		fi
	done
}

# confined NAME PID: the check NAME passes when all 9 threads of PID (main,
# one vCPU, 3 I/O threads, 4 virtio-blk workers) are confined
confined() {
	threads "$2" 2 1
	if [ $NTHREADS -ne 9 ]; then
		fail "$1" "$NTHREADS threads, want 9 (main, vCPU, 3 I/O threads, 4 disk workers)"
	elif [ -n "$BAD" ]; then
		fail "$1" "not confined:$BAD"
	else
		pass "$1"
	fi
}

# stopped NAME PID: SIGTERM ends PID with status 0 (tearing down confined),
# with no seccomp or sanitizer report on stderr
stopped() {
	local rc
	kill -TERM "$2" 2>/dev/null
	wait_bounded "$2" 30
	rc=$?
	if [ $rc -ne 0 ] || grep -q "seccomp" "$TMP/$1.err" || sanitizer_report "$TMP/$1.err"; then
		fail "seccomp-$1-stop" "$(status_text $rc) after SIGTERM (want 0): $(head -c 300 "$TMP/$1.err")"
	else
		pass "seccomp-$1-stop"
	fi
}

# (1) every thread confined, and the main thread's work done confined
if start sc --; then
	confined seccomp-threads $PID
	ctl --vm=sc --status && grep -q "\"pid\": $PID," "$TMP/ctl.out" && pass seccomp-status ||
		fail seccomp-status "$(head -c 300 "$TMP/ctl.err")"
	if ctl --vm=sc --checkpoint="$TMP/sc.cp" --disks && [ -s "$TMP/sc.cp.state" ] &&
		[ -e "$TMP/sc.cp.virtio-blk.3.disk" ] && running $PID; then
		pass seccomp-checkpoint
	else
		fail seccomp-checkpoint "$(head -c 300 "$TMP/ctl.err") $(head -c 300 "$TMP/sc.err")"
	fi
	ctl --vm=sc --pause && ctl --vm=sc --resume && running $PID && pass seccomp-pause-resume ||
		fail seccomp-pause-resume "$(head -c 300 "$TMP/ctl.err") $(head -c 300 "$TMP/sc.err")"
	confined seccomp-threads-after-checkpoint $PID
	stopped sc $PID
else
	fail seccomp-threads "khyve did not answer --status: $(head -c 300 "$TMP/sc.err")"
fi

# a restore goes through set-up too: the restored VM is confined the same way
if [ -s "$TMP/sc.cp.state" ]; then
	KHYVE_BLK_NO_URING=1 "$KHYVE" --rundir "$RUN" -r "$TMP/sc.cp" sc-r </dev/null >/dev/null 2>"$TMP/sc-r.err" &
	PID=$!
	VMPIDS="$VMPIDS $PID"
	if wait_socket "$RUN/sc-r.sock" $PID 10; then
		confined seccomp-threads-restored $PID
		stopped sc-r $PID
	else
		fail seccomp-threads-restored "the restore did not answer --status: $(head -c 300 "$TMP/sc-r.err")"
	fi
else
	fail seccomp-threads-restored "no checkpoint to restore"
fi

# (2) --no-seccomp: no thread has a filter of khyve's
if start nosc -- --no-seccomp; then
	threads $PID "$BASE_SECCOMP"
	[ $NTHREADS -eq 9 ] && [ -z "$BAD" ] && pass seccomp-off ||
		fail seccomp-off "$NTHREADS threads (want 9), with a filter:$BAD"
	stopped nosc $PID
else
	fail seccomp-off "khyve did not answer --status: $(head -c 300 "$TMP/nosc.err")"
fi

# (3) a forbidden call in the main thread, during a checkpoint
want="khyve: seccomp: forbidden system call unshare (272) in the main thread: ending khyve"
if start forbid LD_PRELOAD=$FIX/forbid_call.so "$PRELOAD_ASAN" --; then
	ctl --vm=forbid --checkpoint="$TMP/forbid.cp"
	wait_bounded $PID 30
	rc=$?
	if [ $rc -ne 4 ]; then
		fail seccomp-forbidden-call "$(status_text $rc), want 4: $(head -c 300 "$TMP/forbid.err")"
	elif ! grep -qxF "$want" "$TMP/forbid.err"; then
		fail seccomp-forbidden-call "no line '$want' in: $(head -c 300 "$TMP/forbid.err")"
	elif grep -q "not confined" "$TMP/forbid.err"; then
		fail seccomp-forbidden-call "the call came back: $(head -c 300 "$TMP/forbid.err")"
	else
		pass seccomp-forbidden-call
	fi
else
	fail seccomp-forbidden-call "khyve did not answer --status: $(head -c 300 "$TMP/forbid.err")"
fi
# ... which without seccomp comes back (the shim does make it), and the checkpoint completes
if start forbid-off LD_PRELOAD=$FIX/forbid_call.so "$PRELOAD_ASAN" -- --no-seccomp; then
	ctl --vm=forbid-off --checkpoint="$TMP/forbid-off.cp"
	if grep -q "forbid_call: unshare returned" "$TMP/forbid-off.err" && [ -s "$TMP/forbid-off.cp.state" ] &&
		running $PID; then
		pass seccomp-forbidden-call-unconfined
	else
		fail seccomp-forbidden-call-unconfined "$(head -c 300 "$TMP/ctl.err") $(head -c 300 "$TMP/forbid-off.err")"
	fi
	kill -TERM $PID 2>/dev/null
	wait_bounded $PID 30
else
	fail seccomp-forbidden-call-unconfined "khyve did not answer --status: $(head -c 300 "$TMP/forbid-off.err")"
fi

# (3b) a forbidden call in the checkpoint's memory writer (unlinkat: on the
# main thread's list, not on the writer's): the writer ends, naming it, the
# checkpoint fails with no file left, and khyve runs on; without seccomp
# the call comes back and the checkpoint completes
want="khyve: seccomp: forbidden system call unlinkat (263) in the checkpoint's memory writer: ending the memory writer"
if start fw LD_PRELOAD=$FIX/forbid_writer.so "$PRELOAD_ASAN" --; then
	ctl --vm=fw --checkpoint="$TMP/fw.cp"
	rc=$?
	if [ $rc -eq 0 ]; then
		fail seccomp-writer-forbidden "the checkpoint succeeded: $(head -c 300 "$TMP/fw.err")"
	elif ! grep -qxF "$want" "$TMP/fw.err"; then
		fail seccomp-writer-forbidden "no line '$want' in: $(head -c 300 "$TMP/fw.err")"
	elif ! grep -q "forbidden system call" "$TMP/ctl.err"; then
		fail seccomp-writer-forbidden "the failure does not say why: $(head -c 300 "$TMP/ctl.err")"
	elif grep -q "not confined" "$TMP/fw.err"; then
		fail seccomp-writer-forbidden "the call came back: $(head -c 300 "$TMP/fw.err")"
	elif ls "$TMP" | grep -q '^fw\.cp'; then
		fail seccomp-writer-forbidden "files left behind: $(ls "$TMP" | grep '^fw\.cp' | tr '\n' ' ')"
	elif ! running $PID || ! ctl --vm=fw --status; then
		fail seccomp-writer-forbidden "khyve did not run on: $(head -c 300 "$TMP/fw.err")"
	else
		pass seccomp-writer-forbidden
	fi
	# (not stopped(): its log names the writer's call, as it should)
	kill -TERM $PID 2>/dev/null
	wait_bounded $PID 30
	rc=$?
	[ $rc -eq 0 ] && pass seccomp-fw-stop || fail seccomp-fw-stop "$(status_text $rc) after SIGTERM (want 0)"
else
	fail seccomp-writer-forbidden "khyve did not answer --status: $(head -c 300 "$TMP/fw.err")"
fi
if start fw-off LD_PRELOAD=$FIX/forbid_writer.so "$PRELOAD_ASAN" -- --no-seccomp; then
	ctl --vm=fw-off --checkpoint="$TMP/fw-off.cp"
	if grep -q "forbid_writer: unlinkat returned" "$TMP/fw-off.err" && [ -s "$TMP/fw-off.cp.state" ] &&
		running $PID; then
		pass seccomp-writer-forbidden-unconfined
	else
		fail seccomp-writer-forbidden-unconfined "$(head -c 300 "$TMP/ctl.err") $(head -c 300 "$TMP/fw-off.err")"
	fi
	kill -TERM $PID 2>/dev/null
	wait_bounded $PID 30
else
	fail seccomp-writer-forbidden-unconfined "khyve did not answer --status: $(head -c 300 "$TMP/fw-off.err")"
fi

# (4) a guest's disk and entropy I/O, checkpointed: both runs give the reference digest
if ! have_guest; then
	fail seccomp-guest "test guest not built"
	exit 0
fi
SEED=${KHYVE_TEST_SEED:-$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')}
RANDOM=$SEED
echo "# random moments from seed $SEED (KHYVE_TEST_SEED=$SEED to repeat)"
name=scguest
CP_ENV=KHYVE_BLK_NO_URING=1 cp_guest $name "$TMP/$name.cp"
if [ -s "$TMP/$name.cp.state" ]; then
	KHYVE_BLK_NO_URING=1 bounded 300 "$KHYVE" --rundir "$RUN" -r "$TMP/$name.cp" \
		-l "com1,file:$TMP/$name-r.out" $name-r </dev/null >/dev/null 2>"$TMP/$name-r.err"
	judge $name-r "$want" $?
else
	fail $name-r "checkpoint was not written"
fi
