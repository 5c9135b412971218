# Stock Linux under khyve: Debian's packaged kernel (the one the test
# machine boots, unmodified) with an initramfs of busybox-static and the
# kernel's own modules (scripts/linux-image), and a test disk made here
# with mke2fs -d holding the guest's script.
#
# Everywhere: a bad bzImage or initrd is refused before /dev/kvm, one line,
# status 4.  Then, where KVM runs Linux (kvm_intel/kvm_amd, not KVM PVM,
# scripts/kvm-usable --linux), here; else in the test machine set up for
# Linux (this script again, through scripts/testvm --linux), but only when
# KHYVE_TEST_SET=full is given (make test-full, make test-linux), because
# Linux guests there hang or crash now and then whatever the VMM:
#  - boot on 1, 2 and 4 vCPUs with virtio-blk, virtio-net (a tap in a
#    network namespace of its own, pinged), virtio-rng, virtio-console and
#    COM1 as console: every vCPU online, kvm-clock, the virtio drivers bound
#    with MSI-X, the ACPI devices found (host bridge, ECAM reservation,
#    generation ID with Linux's vmgenid driver bound, event device), no
#    kernel warning; poweroff ends khyve with status 0, reboot with 1;
#  - a 2-vCPU Linux writing files to its disk and pinging the host: three
#    checkpoints (--disks) and a suspend at random rounds; the suspend
#    restored in a fresh process and suspended again at a random round, and
#    that restored; then each checkpoint restored, one after the other.
#    Every restored run must carry on to the end: status 0, every file's
#    content right, the disk clean for e2fsck -fn, the last pings answered,
#    the guest's uptime never going back nor jumping, every vCPU online,
#    no warning in the kernel log;
#  - two clones of one checkpoint at once, each with its own disk copy, tap
#    (in a namespace of its own) and MAC: both carry on to the end, with
#    generation IDs that differ from each other and from the original's,
#    and the generation event delivered.
. tests/lib.sh

LINUX=$BUILD/linux
NS=khyve-l$$
VMPIDS=
cleanup() {
	kill -9 $VMPIDS 2>/dev/null
	[ -e "/run/netns/$NS" ] && ip netns del "$NS" 2>/dev/null
	[ -e "/run/netns/$NS-2" ] && ip netns del "$NS-2" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT

if [ ! -s "$LINUX/vmlinuz" ] || [ ! -s "$LINUX/initramfs.gz" ]; then
	fail linux-image "no $LINUX/vmlinuz or initramfs.gz (make builds them with scripts/linux-image)"
	exit 0
fi

# ---- bad images: refused before KVM, wherever this runs ---------------------
if [ "${KHYVE_IN_TESTVM:-}" != 1 ]; then
	head -c 600 "$LINUX/vmlinuz" >"$TMP/short.bz"
	expect_error linux-truncated "is truncated" -k "$TMP/short.bz" lbad
	{ head -c 518 "$LINUX/vmlinuz"; printf '\001\002'; tail -c +521 "$LINUX/vmlinuz"; } >"$TMP/old.bz"
	expect_error linux-old-protocol "boot protocol 2.01 is too old" -k "$TMP/old.bz" lbad
	expect_error linux-two-initrds "it takes one -i (its initrd), not 2" -k "$LINUX/vmlinuz" \
		-i "$LINUX/initramfs.gz" -i "$LINUX/initramfs.gz" lbad
	expect_error linux-initrd-args "a Linux initrd takes no arguments" -k "$LINUX/vmlinuz" \
		-i "$LINUX/initramfs.gz x=1" lbad
	expect_error linux-initrd-missing "cannot read initrd '$TMP/none'" -k "$LINUX/vmlinuz" -i "$TMP/none" lbad
	expect_error linux-no-room "does not fit in guest memory" -m 16M -k "$LINUX/vmlinuz" \
		-i "$LINUX/initramfs.gz" lbad
fi

# ---- where Linux can run ----------------------------------------------------
# The test machine's emulated AMD-V is not reliable enough under Linux
# guests for the suite every change must pass: whatever its set-up, a
# guest or the machine itself hangs, panics or triple-faults in about half
# of the runs, and QEMU's own Linux guest hangs there too (scripts/testvm,
# README "Not done yet").  So there the Linux checks run when asked for.
if [ "${KHYVE_IN_TESTVM:-}" = 1 ] && [ "${KHYVE_TEST_SET:-}" != full ]; then
	skip linux-vm "in the test machine, whose emulated AMD-V hangs or crashes Linux guests now and then, the Linux VM checks run in make test-full and make test-linux"
	exit 0
fi
if ! scripts/kvm-usable --linux -v 2>"$TMP/kvm.err"; then
	if [ "${KHYVE_IN_TESTVM:-}" = 1 ]; then
		fail linux-kvm "the test machine's KVM does not run Linux: $(cat "$TMP/kvm.err")"
		exit 0
	fi
	if [ "${KHYVE_TEST_SET:-}" != full ]; then
		skip linux-vm "$(sed "s/^kvm-usable: //" "$TMP/kvm.err"), and the test machine's emulated AMD-V hangs or crashes Linux guests now and then: the Linux VM checks run in make test-full and make test-linux here"
		exit 0
	fi
	echo "# $(sed "s/^kvm-usable: //" "$TMP/kvm.err"): the Linux checks run in the test machine"
	# A machine of one vCPU (scripts/testvm --linux says why).  One that
	# hung, panicked or did not start (see tests/run.sh) gets a second
	# chance, the first one's lines shown as comments.  Both must end
	# within tests/run.sh's 900 s for a script, so that what they printed
	# is shown: the machine is stopped at the deadline.
	deadline=$((SECONDS + $(tmo 840)))
	for attempt in 1 2; do
		KHYVE_TESTVM_TIMEOUT=$((deadline - SECONDS)) KHYVE_TIMEOUT_SCALE=$((SCALE * 10)) \
			scripts/testvm --linux bash tests/integration/40-linux.sh >"$TMP/tvm.out" 2>&1
		if [ $attempt = 1 ] && [ $((deadline - SECONDS)) -ge "$(tmo 300)" ] &&
			! grep -q '^PASS linux-io-restore-c3' "$TMP/tvm.out" &&
			grep -qE "^testvm: the test machine( stopped answering| did not start|'s kernel panicked)" "$TMP/tvm.out"; then
			sed 's/^/# first attempt: /' "$TMP/tvm.out"
			echo "# the test machine failed before the last Linux check; once more in a new one"
			continue
		fi
		cat "$TMP/tvm.out"
		break
	done
	grep -qE '^(PASS|FAIL|SKIP) ' "$TMP/tvm.out" ||
		fail linux-testvm "the test machine ended before the Linux checks ran: $(grep '^testvm' "$TMP/tvm.out" | tail -2 | tr '\n' ' ')"
	grep -q '^PASS linux-io-restore-c3' "$TMP/tvm.out" || grep -qE '^FAIL ' "$TMP/tvm.out" ||
		fail linux-testvm "the test machine ended before the last Linux check: $(grep '^testvm' "$TMP/tvm.out" | tail -2 | tr '\n' ' ')"
	exit 0
fi
if [ "$(id -u)" != 0 ] || [ ! -c /dev/net/tun ] || ! command -v ip >/dev/null || ! command -v mke2fs >/dev/null; then
	skip linux "needs root, /dev/net/tun, ip(8) and mke2fs"
	exit 0
fi
ip netns add "$NS" || { fail linux-netns "ip netns add $NS failed"; exit 0; }
nsx() { ip netns exec "$NS" "$@"; }
nsx ip link set lo up
nsx ip tuntap add dev ltap0 mode tap && nsx ip addr add 10.0.2.1/24 dev ltap0 && nsx ip link set ltap0 up ||
	{ fail linux-tap "cannot make tap ltap0 in $NS"; exit 0; }

# mkdisk IMAGE SCRIPT: a 64 MiB ext4 image whose run.sh is SCRIPT
mkdisk() {
	rm -rf "$TMP/disk.d" && mkdir -p "$TMP/disk.d" && cp "$2" "$TMP/disk.d/run.sh" &&
		mke2fs -q -F -t ext4 -d "$TMP/disk.d" "$1" 64M >/dev/null
}

# boot NAME NCPU END: Linux with every device; GUEST lines in $TMP/NAME.con
boot() {
	local name=$1 ncpu=$2 end=$3
	mkdisk "$TMP/$name.img" tests/linux/report.sh || { fail "$name" "mke2fs failed"; return 1; }
	bounded 60 ip netns exec "$NS" "$KHYVE" -c "$ncpu" -m 512M -k "$LINUX/vmlinuz" -i "$LINUX/initramfs.gz" \
		-A "console=ttyS0 khyve.end=$end" -l "com1,file:$TMP/$name.con" \
		-s 2,virtio-blk,"$TMP/$name.img" -s 3,virtio-net,tap=ltap0,mac=52:54:00:12:34:0$ncpu \
		-s 4,virtio-rnd -s 5,virtio-console,file:"$TMP/$name.hvc" "l$$-$name" \
		</dev/null >/dev/null 2>"$TMP/$name.err"
}

# guest KEY NAME: the value the guest reported for KEY
guest() { tr -d '\r' <"$TMP/$2.con" | sed -n "s/^GUEST $1=//p" | tail -1; }

# kernel_warnings NAME: the warnings in the guest's kernel log that count.
# In the test machine, Linux warns at boot "XSAVE consistency problem"
# (xstate.c) under QEMU -enable-kvm -cpu host exactly as under khyve: the
# emulated AMD-V's KVM does not update CPUID 0xD's size for the guest's
# XCR0.  That one is the machine's, not khyve's, and is left out there.
kernel_warnings() {
	tr -d '\r' <"$TMP/$1.con" | sed -n 's/^GUEST dmesg: //p' |
		if [ "${KHYVE_IN_TESTVM:-}" = 1 ]; then grep -v 'arch/x86/kernel/fpu/xstate.c'; else cat; fi
}

for n in 1 2 4; do
	name=linux-boot-${n}cpu
	boot "$name" "$n" poweroff
	rc=$?
	want_online=0
	[ "$n" -gt 1 ] && want_online="0-$((n - 1))"
	why=
	[ $rc -eq 0 ] || why="$why; $(status_text $rc) (want 0, poweroff)"
	[ "$(guest cpus "$name")" = "$n" ] || why="$why; cpus '$(guest cpus "$name")'"
	[ "$(guest online "$name")" = "$want_online" ] || why="$why; online '$(guest online "$name")'"
	[ "$(guest clocksource "$name")" = kvm-clock ] || why="$why; clocksource '$(guest clocksource "$name")'"
	case $(guest hwrng "$name") in virtio_rng*) ;; *) why="$why; hwrng '$(guest hwrng "$name")'" ;; esac
	[ "$(guest rngbytes "$name")" = 16 ] || why="$why; /dev/hwrng gave '$(guest rngbytes "$name")' bytes"
	grep -q "hello through hvc0" "$TMP/$name.hvc" 2>/dev/null || why="$why; nothing through hvc0"
	[ "$(guest mac "$name")" = "52:54:00:12:34:0$n" ] || why="$why; mac '$(guest mac "$name")'"
	[ "$(guest msix "$name")" -ge 4 ] 2>/dev/null || why="$why; MSI-X vectors '$(guest msix "$name")'"
	[ "$(guest vda "$name")" = 131072 ] || why="$why; vda sectors '$(guest vda "$name")'"
	[ "$(guest ping "$name")" = ok ] || why="$why; ping '$(guest ping "$name")'"
	case $(guest acpi "$name") in *ACPI0013*PNP0A08*PNP0C02*VMGENCTR*) ;; *) why="$why; ACPI devices '$(guest acpi "$name")'" ;; esac
	[ "$(guest vmgenid "$name")" = 1 ] || why="$why; the vmgenid driver did not bind"
	[ "$(guest console "$name")" = ttyS0 ] || why="$why; console '$(guest console "$name")'"
	[ -z "$(kernel_warnings "$name")" ] || why="$why; kernel warnings: $(kernel_warnings "$name" | head -3 | tr '\n' '|')"
	grep -q '^GUEST done' "$TMP/$name.con" || why="$why; the guest did not finish its report"
	if sanitizer_report "$TMP/$name.err"; then
		fail "$name" "sanitizer report: $(head -5 "$TMP/$name.err" | tr '\n' ' ')"
	elif [ -n "$why" ]; then
		fail "$name" "${why#; } (console: $(tr -d '\r' <"$TMP/$name.con" | grep -v '^GUEST' | tail -3 | tr '\n' ' '))"
	else
		pass "$name"
	fi
done

boot linux-reboot 1 reboot
rc=$?
if [ $rc -eq 1 ] && [ "$(guest cpus linux-reboot)" = 1 ]; then
	pass linux-reboot
else
	fail linux-reboot "$(status_text $rc) (want 1, reboot): $(tail -3 "$TMP/linux-reboot.con" | tr '\n' ' ')"
fi

# ---- checkpoints and suspends of a Linux doing disk and network I/O ----------
ROUNDS=$(by_set 14 24)
RUN=$TMP/run
mkdir -p "$RUN"
CTL=$BUILD/khyvectl

# start_io NAME NS ARGS...: khyve (ARGS: a boot or a restore) in NS, in the
# background, console in $TMP/NAME.con; its PID in VMPID
start_io() {
	local name=$1 ns=$2
	shift 2
	ip netns exec "$ns" "$KHYVE" "$@" -l "com1,file:$TMP/$name.con" --rundir "$RUN" "l$$-$name" \
		</dev/null >/dev/null 2>"$TMP/$name.err" &
	VMPID=$!
	VMPIDS="$VMPIDS $VMPID"
}

# gen_of NAME: the generation IDs the guest printed, one per round
gen_of() { tr -d '\r' <"$TMP/$1.con" | sed -n 's/^result .* gen=\(0x[0-9A-Fa-f]*\)$/\1/p'; }

# judge_io CHECK NAME RC DISK [MAC]: the run NAME (of start_io) must have
# carried on to the end, with MAC (default the original's) on eth0
judge_io() {
	local check=$1 name=$2 rc=$3 disk=$4 mac=${5:-52:54:00:12:34:56} why= ups last fsck
	touch "$TMP/$name.con" "$TMP/$name.err"
	[ "$(guest mac "$name")" = "$mac" ] || why="$why; eth0's MAC '$(guest mac "$name")', want $mac"
	[ "$rc" -eq 0 ] || why="$why; $(status_text "$rc") (want 0)"
	[ "$(guest bad_files "$name")" = none ] || why="$why; files with wrong content: '$(guest bad_files "$name")'"
	[ "$(guest online "$name")" = 0-1 ] || why="$why; online '$(guest online "$name")'"
	[ -z "$(kernel_warnings "$name")" ] || why="$why; kernel log: $(kernel_warnings "$name" | head -3 | tr '\n' '|')"
	grep -q '^GUEST done' "$TMP/$name.con" || why="$why; the guest did not finish"
	last=$(tr -d '\r' <"$TMP/$name.con" | grep '^result ' | tail -2 | grep -c 'ping=ok')
	[ "$last" = 2 ] || why="$why; the last pings were not answered: $(grep '^result ' "$TMP/$name.con" | tail -2 | tr '\r\n' '  ')"
	# uptime: increasing, and no step longer than 30 s of guest time (scaled)
	ups=$(tr -d '\r' <"$TMP/$name.con" | sed -n 's/^result [0-9]* ping=[a-z]* up=\([0-9.]*\) .*$/\1/p')
	if ! echo "$ups" | awk -v max="$(tmo 30)" 'NR > 1 && ($1 < prev || $1 - prev > max) { bad = 1 } { prev = $1 } END { exit bad }'; then
		why="$why; uptime went back or jumped: $(echo $ups)"
	fi
	if [ "$rc" -eq 0 ] && ! fsck=$(e2fsck -fn "$disk" 2>&1); then
		why="$why; e2fsck -fn: $(echo "$fsck" | tail -2 | tr '\n' ' ')"
	fi
	if sanitizer_report "$TMP/$name.err"; then
		fail "$check" "sanitizer report: $(head -5 "$TMP/$name.err" | tr '\n' ' ')"
	elif [ -n "$why" ]; then
		fail "$check" "${why#; } (console: $(tr -d '\r' <"$TMP/$name.con" | tail -2 | tr '\n' ' ') $(head -c 200 "$TMP/$name.err"))"
	else
		pass "$check"
	fi
}

mkdisk "$TMP/io.img" tests/linux/io.sh || fail linux-io-disk "mke2fs failed"
start_io io "$NS" -c 2 -m 512M -k "$LINUX/vmlinuz" -i "$LINUX/initramfs.gz" \
	-A "console=ttyS0 khyve.rounds=$ROUNDS" -s 2,virtio-blk,"$TMP/io.img" \
	-s 3,virtio-net,tap=ltap0,mac=52:54:00:12:34:56 -s 4,virtio-rnd
pid=$VMPID
pick_rounds 4 1 $((ROUNDS - 5))
failed=
if ! wait_socket "$RUN/l$$-io.sock" "$pid" 120; then
	failed="no control socket: $(tail -2 "$TMP/io.err")"
else
	for k in 1 2 3; do
		snap_at "$TMP/io.con" "${PICKED[$((k - 1))]}" "$pid" "$RUN/l$$-io.sock" checkpoint "$TMP/c$k" disks ||
			failed="$failed c$k (round ${PICKED[$((k - 1))]}: $SNAP_WHY);"
	done
	r4=$((PICKED[3] + 1))
	snap_at "$TMP/io.con" "$r4" "$pid" "$RUN/l$$-io.sock" suspend "$TMP/s4" disks ||
		failed="$failed s4 (round $r4: $SNAP_WHY);"
	go "$pid"
fi
wait_bounded "$pid" 60
rc=$?
if [ -z "$failed" ] && [ $rc -eq 5 ]; then
	pass linux-io-snapshots
else
	fail linux-io-snapshots "${failed:-} $(status_text $rc) (want 5, suspended): $(tail -2 "$TMP/io.con" | tr '\r\n' '  ') $(head -c 300 "$TMP/io.err")"
fi

# the suspend, restored and suspended again, and that restored
if [ -s "$TMP/s4" ]; then
	start_io r4 "$NS" -r "$TMP/s4"
	pid=$VMPID
	r5=$((r4 + 1 + RANDOM % 3))
	failed=
	wait_socket "$RUN/l$$-r4.sock" "$pid" 120 || failed="no control socket: $(tail -2 "$TMP/r4.err")"
	[ -n "$failed" ] || snap_at "$TMP/r4.con" "$r5" "$pid" "$RUN/l$$-r4.sock" suspend "$TMP/s5" disks ||
		failed="s5 (round $r5: $SNAP_WHY)"
	go "$pid"
	wait_bounded "$pid" 60
	rc=$?
	if [ -z "$failed" ] && [ $rc -eq 5 ] && grep -q "^round $r5" "$TMP/r4.con"; then
		pass linux-io-restore-suspend
	else
		fail linux-io-restore-suspend "$failed $(status_text $rc) (want 5): the restore's round lines: $(tr -d '\r' <"$TMP/r4.con" | grep -E '^(round|result|newgen) ' | cut -c1-24 | tr '\n' '|'); console: $(tail -2 "$TMP/r4.con" | tr '\r\n' '  ') $(head -c 300 "$TMP/r4.err")"
	fi
	if [ -s "$TMP/s5" ]; then
		start_io r5 "$NS" -r "$TMP/s5"
		wait_bounded "$VMPID" 60
		judge_io linux-io-restore-r5 r5 $? "$TMP/s5.virtio-blk.2.disk"
	fi
fi

# two clones of c1 at once: own disk copy, own tap (a second namespace),
# own MAC (which the guest's driver reads when rebound on the new generation)
if [ -s "$TMP/c1" ]; then
	ip netns add "$NS-2" && ip netns exec "$NS-2" ip tuntap add dev ltap0 mode tap &&
		ip netns exec "$NS-2" ip addr add 10.0.2.1/24 dev ltap0 && ip netns exec "$NS-2" ip link set ltap0 up ||
		fail linux-clones "cannot make the second namespace's tap"
	cp --sparse=always "$TMP/c1.virtio-blk.2.disk" "$TMP/cloneA.img"
	cp --sparse=always "$TMP/c1.virtio-blk.2.disk" "$TMP/cloneB.img"
	start_io cloneA "$NS" -r "$TMP/c1" -s 2,virtio-blk,"$TMP/cloneA.img" -s 3,virtio-net,tap=ltap0,mac=52:54:00:00:0a:01 -s 4,virtio-rnd
	pa=$VMPID
	start_io cloneB "$NS-2" -r "$TMP/c1" -s 2,virtio-blk,"$TMP/cloneB.img" -s 3,virtio-net,tap=ltap0,mac=52:54:00:00:0b:01 -s 4,virtio-rnd
	pb=$VMPID
	wait_bounded "$pa" 60
	ra=$?
	wait_bounded "$pb" 60
	rb=$?
	judge_io linux-clone-a cloneA $ra "$TMP/cloneA.img" 52:54:00:00:0a:01
	judge_io linux-clone-b cloneB $rb "$TMP/cloneB.img" 52:54:00:00:0b:01
	# each restore is a new generation: the clones' IDs differ, from each
	# other and from the original's, and the guest got the event
	g0=$(gen_of io | head -1) ga=$(gen_of cloneA | tail -1) gb=$(gen_of cloneB | tail -1)
	if [ -n "$g0" ] && [ -n "$ga" ] && [ -n "$gb" ] && [ "$ga" != "$gb" ] && [ "$ga" != "$g0" ] &&
		[ "$gb" != "$g0" ] && [ "$(guest ged_irqs cloneA)" -ge 1 ] 2>/dev/null; then
		pass linux-clone-genid
	else
		fail linux-clone-genid "generation IDs: original '$g0', clone A '$ga', clone B '$gb'; GED interrupts in A: '$(guest ged_irqs cloneA)'"
	fi
fi

# each checkpoint, restored in a fresh process (the original is gone)
for k in 1 2 3; do
	[ -s "$TMP/c$k" ] || { fail linux-io-restore-c$k "checkpoint c$k was not taken"; continue; }
	start_io rc$k "$NS" -r "$TMP/c$k"
	wait_bounded "$VMPID" 60
	judge_io linux-io-restore-c$k rc$k $? "$TMP/c$k.virtio-blk.2.disk"
done
