#!/bin/bash
# make demo: a stock Linux (Debian's kernel, a busybox initramfs, a virtio
# disk; scripts/linux-image) on 2 vCPUs under khyve.  Its boot and a shell
# loop on its console, then a suspend (khyvectl --suspend --disks: saved,
# and the VM ends), a restore of that snapshot in a new khyve process, and
# the same loop carrying on: its counter and the guest's uptime continue
# where they were.  Runs in the test machine where KVM cannot run Linux.
BUILD=${1:-build}
LINUX=$BUILD/linux
NCPU=${DEMO_NCPU:-2}

if [ -z "${KHYVE_IN_TESTVM:-}" ] && ! "$(dirname "$0")/kvm-usable" --linux 2>/dev/null; then
	echo "== this host's KVM cannot run Linux guests ($("$(dirname "$0")/kvm-usable" --linux -v 2>&1 | sed 's/^kvm-usable: //'))"
	echo "== so the demo runs in the test machine (scripts/testvm: QEMU emulating AMD-V, 5-20x slower)"
	exec "$(dirname "$0")/testvm" --linux bash scripts/demo.sh "$BUILD"
fi
[ -s "$LINUX/vmlinuz" ] || { echo "demo: no $LINUX/vmlinuz (make demo builds it)"; exit 1; }

T=$(mktemp -d /tmp/khyve-demo.XXXXXX)
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$T"' EXIT
mkdir -p "$T/disk" "$T/run"
cat >"$T/disk/run.sh" <<'GUEST'
echo "guest: $(cat /proc/version | cut -d' ' -f1-3), $(grep -c ^processor /proc/cpuinfo) CPUs, clocksource $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
echo "guest: $ df -h /mnt"; df -h /mnt | sed 's/^/guest:   /'
i=0
while [ $i -lt 16 ]; do
	echo "$i" >/mnt/counter && sync
	echo "guest loop $i: uptime $(cut -d' ' -f1 /proc/uptime) s"
	sleep 1
	i=$((i + 1))
done
echo "guest: loop done, counter on disk: $(cat /mnt/counter); powering off"
umount /mnt
poweroff -f
GUEST
mke2fs -q -F -t ext4 -d "$T/disk" "$T/disk.img" 32M || exit 1

CON=$T/console
# show FILE from line FROM on, until PATTERN or PID ends; the line number after it
follow() {
	local file=$1 from=$2 pattern=$3 pid=$4 n
	while :; do
		n=$( { wc -l <"$file"; } 2>/dev/null || echo 0)
		if [ "$n" -ge "$from" ]; then
			sed -n "${from},${n}p" "$file" | tr -d '\r' | grep -E 'Linux version|Command line|smp: Brought|virtio_blk|Run /init|linux-init|^guest' |
				sed 's/^/  | /'
			from=$((n + 1))
			sed -n "1,${n}p" "$file" | grep -qE "$pattern" && break
		fi
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.2
	done
	echo "$from" >"$T/pos"
}

echo "== $BUILD/khyve -c $NCPU -m 512M -k $LINUX/vmlinuz -i $LINUX/initramfs.gz -A 'console=ttyS0' -s 2,virtio-blk,disk.img demo"
# every khyve run is bounded: a hung guest ends the demo with a message, not a hang
timeout 900 "$BUILD/khyve" -c "$NCPU" -m 512M -k "$LINUX/vmlinuz" -i "$LINUX/initramfs.gz" -A "console=ttyS0" \
	-s 2,virtio-blk,"$T/disk.img" -l com1,file:"$CON" --rundir "$T/run" demo </dev/null &
PID=$!
follow "$CON" 1 '^guest loop 5:' $PID
echo "== khyvectl --vm=demo --suspend=snap --disks   (the VM is saved with a copy of its disk, then ends)"
"$BUILD/khyvectl" --vm=demo --rundir="$T/run" --suspend="$T/snap" --disks || { echo "== the suspend failed"; exit 1; }
wait $PID
echo "== khyve exited with status $? (5: suspended); snapshot: $(du -h --apparent-size "$T/snap" | cut -f1) of memory (sparse: $(du -h "$T/snap" | cut -f1) on disk), $(stat -c %s "$T/snap.state") bytes of state"
echo "== $BUILD/khyve -r snap   (a new process; nothing from the first command line)"
: >"$CON.2"
timeout 900 "$BUILD/khyve" -r "$T/snap" -l com1,file:"$CON.2" --rundir "$T/run" demo </dev/null &
PID=$!
follow "$CON.2" 1 'powering off' $PID
wait $PID
rc=$?
echo "== khyve exited with status $rc (0: the guest powered off)"
[ $rc -eq 0 ]
