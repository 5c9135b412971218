# The test guest's blk and net workloads under QEMU's virtio-blk-pci and
# virtio-net-pci (modern only) give the reference digest, and the disk ends
# up holding what testguest-ref --blk-image computes: a cross-check of the
# guest's drivers and reference that does not need khyve's devices.  net
# runs QEMU in a network namespace on a tap, with tap_echo.py echoing the
# frames; it is skipped when namespaces or taps are not available.  Skipped
# as a whole when QEMU is not installed.
. tests/lib.sh
if ! command -v qemu-system-x86_64 >/dev/null; then
	skip qemu-virtio "qemu-system-x86_64 not installed"
	exit 0
fi
if ! have_guest; then
	fail qemu-virtio "test guest not built"
	exit 0
fi

ECHO=$(cd "$(dirname "$0")" && pwd)/tap_echo.py
NS=
ECHO_PID=
cleanup() {
	[ -n "$ECHO_PID" ] && kill "$ECHO_PID" 2>/dev/null && wait_bounded "$ECHO_PID" 10 2>/dev/null
	[ -n "$NS" ] && ip netns del "$NS"
	rm -rf "$TMP"
}
trap cleanup EXIT

# qemu NAME NCPU CMDLINE [QEMU-ARGS...]: runs the guest (inside $NS when
# $IN_NS is set); status in $rc (124: did not finish in time), PASS digest
# in $got
qemu() {
	local name=$1 n=$2 cmd=$3
	shift 3
	bounded 300 ${IN_NS:+ip netns exec "$NS"} qemu-system-x86_64 -enable-kvm \
		-cpu host,-arch-capabilities -smp "$n" -m 256 -kernel "$GUEST" -append "$cmd" \
		-device isa-debug-exit,iobase=0xf4,iosize=0x04 -serial "file:$TMP/$name.out" \
		-display none -nodefaults -monitor none -no-reboot "$@" \
		</dev/null >/dev/null 2>"$TMP/$name.err"
	rc=$?
	got=$(guest_digest "$TMP/$name.out")
}

said() { echo "$(tail -2 "$TMP/$1.out" | tr -d '\r' | tr '\n' ' ')$(head -c 300 "$TMP/$1.err")"; }

# --- blk --------------------------------------------------------------

# blk_ok NAME NCPU CMDLINE DISK-MIB [DEVICE-OPTIONS]: PASS with the
# reference digest, and the disk's first blkmb MiB are --blk-image's, the
# rest still zeros
blk_ok() {
	local name=$1 n=$2 cmd=$3 size=$4 opts=${5-} want mb
	want=$(ref_digest "$n" "$cmd")
	rm -f "$TMP/disk.img"
	truncate -s "${size}M" "$TMP/disk.img"
	qemu "$name" "$n" "$cmd" -drive "file=$TMP/disk.img,format=raw,if=none,id=d0" \
		-device "virtio-blk-pci,drive=d0,disable-legacy=on$opts"
	if [ -z "$want" ]; then
		fail "$name" "no reference digest (testguest-ref failed)"
		return
	elif [ $rc -ne 1 ] || [ "$got" != "$want" ]; then
		fail "$name" "$(status_text $rc) (want 1), digest '$got', reference '$want': $(said "$name")"
		return
	fi
	mb=$(echo "$cmd" | sed -n 's/.*blkmb=\([0-9]*\).*/\1/p')
	mb=${mb:-4}
	if ! bounded 120 "$REF" --blk-image "$cmd" "$TMP/want.img"; then
		fail "$name-disk" "testguest-ref --blk-image failed"
	elif ! cmp -s -n $((mb << 20)) "$TMP/want.img" "$TMP/disk.img"; then
		fail "$name-disk" "the disk differs from testguest-ref --blk-image: $(cmp -n $((mb << 20)) "$TMP/want.img" "$TMP/disk.img" 2>&1)"
	elif [ "$size" -gt "$mb" ] && ! cmp -s -i $((mb << 20)) -n $(((size - mb) << 20)) \
		"$TMP/disk.img" /dev/zero; then
		fail "$name-disk" "the disk was written beyond blkmb=$mb MiB"
	else
		pass "$name"
	fi
}

# blk_fails NAME "message part" CMDLINE DISK-MIB [DEVICE-OPTIONS]: FAIL line
blk_fails() {
	local name=$1 msg=$2 cmd=$3 size=$4 opts=${5-}
	[ -e "$TMP/disk.img" ] || truncate -s "${size}M" "$TMP/disk.img"
	qemu "$name" 1 "$cmd" -drive "file=$TMP/disk.img,format=raw,if=none,id=d0" \
		-device "virtio-blk-pci,drive=d0,disable-legacy=on$opts"
	if [ $rc -eq 3 ] && grep -qF "FAIL cpu 0: $msg" "$TMP/$name.out"; then
		pass "$name"
	else
		fail "$name" "$(status_text $rc), want 3 and '$msg': $(said "$name")"
	fi
}

# core: 2 vCPUs; full: also 1 vCPU, a device that cuts write-zeroes into
# many requests and has a 20-byte serial (no NUL in the ID), a 64 MiB disk
full_only && blk_ok blk-1cpu 1 "workload=blk rounds=3 seed=7" 4
blk_ok blk-2cpu 2 "workload=blk,smp,time rounds=$(by_set 2 3) blkmb=16 seed=8" 24
if full_only; then
	blk_ok blk-wz-limit 1 "workload=blk rounds=2 blkmb=8 seed=9" 8 \
		",max-write-zeroes-sectors=64,serial=ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	blk_ok blk-64mb 1 "workload=blk rounds=2 blkmb=64 seed=10" 64
fi

# ways the workload must fail (full set): a disk not zero where it
# expects zeros, too small, without write-zeroes
if full_only; then
	rm -f "$TMP/disk.img"
	truncate -s 4M "$TMP/disk.img"
	printf x | dd of="$TMP/disk.img" bs=1 seek=1000000 conv=notrunc 2>/dev/null
	blk_fails blk-dirty-disk "blk: round 1 sector 1953: read back wrong data (want round 0's content)" \
		"workload=blk rounds=2" 4
	rm -f "$TMP/disk.img"
	blk_fails blk-too-small "blk: the disk is smaller than blkmb" "workload=blk rounds=1 blkmb=8" 4
	blk_fails blk-no-write-zeroes "blk: device does not offer VIRTIO_BLK_F_WRITE_ZEROES" \
		"workload=blk rounds=1" 4 ",write-zeroes=off"
fi
rm -f "$TMP/disk.img"

# --- net --------------------------------------------------------------

NS=khyve-t$$
if ! command -v ip >/dev/null || ! command -v python3 >/dev/null || ! ip netns add "$NS" 2>/dev/null; then
	NS=
	skip net "no network namespaces here (ip netns add failed)"
	exit 0
fi
if ! ip netns exec "$NS" ip tuntap add dev tap0 mode tap 2>/dev/null ||
	! ip netns exec "$NS" ip link set tap0 up; then
	skip net "cannot create a tap in a network namespace"
	exit 0
fi
IN_NS=1

# echo_start [--noise]: tap_echo.py on tap0, ready when it returns
echo_start() {
	rm -f "$TMP/echo.ready"
	ip netns exec "$NS" python3 "$ECHO" "$@" tap0 "$TMP/echo.ready" 2>"$TMP/echo.err" &
	ECHO_PID=$!
	wait_until 10 ready "$TMP/echo.ready" "$ECHO_PID"
}

echo_stop() {
	kill "$ECHO_PID" 2>/dev/null
	wait_bounded "$ECHO_PID" 10 2>/dev/null
	ECHO_PID=
}

# net_ok NAME NCPU CMDLINE FRAMES [--noise] [DEVICE-OPTIONS]
net_ok() {
	local name=$1 n=$2 cmd=$3 frames=$4 noise=$5 opts=${6-} want echoed
	want=$(ref_digest "$n" "$cmd")
	if ! echo_start $noise; then
		fail "$name" "tap_echo.py did not start: $(head -c 300 "$TMP/echo.err")"
		echo_stop
		return
	fi
	qemu "$name" "$n" "$cmd" -netdev tap,id=n0,ifname=tap0,script=no,downscript=no \
		-device "virtio-net-pci,netdev=n0,disable-legacy=on,romfile=$opts"
	echo_stop
	echoed=$(sed -n 's/^echoed \([0-9]*\) frames$/\1/p' "$TMP/echo.err")
	if [ -z "$want" ]; then
		fail "$name" "no reference digest (testguest-ref failed)"
	elif [ $rc -ne 1 ] || [ "$got" != "$want" ]; then
		fail "$name" "$(status_text $rc) (want 1), digest '$got', reference '$want': $(said "$name")"
	elif [ "${echoed:-0}" -ne "$frames" ]; then
		fail "$name" "tap_echo.py echoed '$echoed' frames, want $frames"
	else
		pass "$name"
	fi
}

full_only && net_ok net-1cpu 1 "workload=net rounds=3 seed=7" 96 ""
# other MAC, same digest; frames to ignore, duplicates, late echoes
net_ok net-2cpu-noise 2 "workload=net,smp rounds=4 netframes=300 seed=8" 1200 --noise \
	",mac=52:54:00:ab:cd:ef"

# nobody echoes: a bounded wait (the guest's stall timeout, ~25 s), then
# FAIL naming the frame and round (full set)
if full_only; then
	name=net-no-echo
	qemu $name 1 "workload=net rounds=1" -netdev tap,id=n0,ifname=tap0,script=no,downscript=no \
		-device virtio-net-pci,netdev=n0,disable-legacy=on,romfile=
	if [ $rc -eq 3 ] && grep -qF "FAIL cpu 0: net: frame 0 of round 1 not echoed" "$TMP/$name.out"; then
		pass $name
	else
		fail $name "$(status_text $rc), want 3 and 'not echoed': $(said $name)"
	fi
fi
