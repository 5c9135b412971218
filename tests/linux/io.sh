# Guest side of the snapshot checks of tests/integration/40-linux.sh, run
# by scripts/linux-init as /mnt/run.sh: khyve.rounds= rounds, each writing
# a 256 KiB file of known content to the ext4 disk, syncing it, and pinging
# the host through virtio-net: "round N" on the console as it begins (the
# host takes its checkpoints at random moments after that line, of random
# rounds: in the middle of the I/O), "result N ping=ok|lost up=UPTIME
# gen=ID" as it ends, with the uptime and the VM generation ID.  When the
# generation changed (a restore), the network driver is bound anew, as a
# clone must, and "newgen N mac=MAC" says what it found.  Then every
# file is checked against its content, and the kernel log for warnings;
# GUEST lines report both before the guest powers off.
arg() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
content() { yes "khyve round $1" | head -c 262144; }
N=$(arg khyve.rounds)
# Only warnings and worse on the console: the host waits for "round N"
# lines there, and a kernel message printed while the tty still holds
# part of a line can land in the middle of it.  The whole log is still
# read with dmesg at the end.
dmesg -n 5
ip addr add 10.0.2.15/24 dev eth0 && ip link set eth0 up
mkdir -p /mnt/data
echo "GUEST start"
# a new generation (a restore): identities are the device's again, so the
# network driver is bound anew and reads the MAC, which a clone may change
rebind_net() {
	local drv=/sys/bus/virtio/drivers/virtio_net d
	for d in "$drv"/virtio*; do
		echo "${d##*/}" >"$drv/unbind"
		echo "${d##*/}" >"$drv/bind"
	done
	ip addr add 10.0.2.15/24 dev eth0 && ip link set eth0 up
	echo "newgen $i mac=$(cat /sys/class/net/eth0/address)"
}
gen0=$(devmem 0xef000 64)
i=0
while [ "$i" -lt "$N" ]; do
	echo "round $i"
	g=$(devmem 0xef000 64)
	[ "$g" = "$gen0" ] || { gen0=$g; rebind_net; }
	content "$i" >/mnt/data/f$i
	sync
	ping -c 1 -W 10 10.0.2.1 >/dev/null 2>&1 && p=ok || p=lost
	# the VM generation ID (its page is below 1 MiB, which /dev/mem allows)
	echo "result $i ping=$p up=$(cut -d' ' -f1 /proc/uptime) gen=$(devmem 0xef000 64)"
	i=$((i + 1))
done
bad=
i=0
while [ "$i" -lt "$N" ]; do
	[ "$(content "$i" | md5sum)" = "$(md5sum </mnt/data/f$i)" ] || bad="$bad $i"
	i=$((i + 1))
done
echo "GUEST bad_files=${bad:-none}"
echo "GUEST online=$(cat /sys/devices/system/cpu/online)"
echo "GUEST mac=$(cat /sys/class/net/eth0/address)"
echo "GUEST ged_irqs=$(awk '/ged|GED|Ged/ { n = 0; for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) n += $i; print n }' /proc/interrupts | head -1)"
# CPU-vulnerability advisories left out, as in report.sh
dmesg | grep -i -E 'WARNING:|soft lockup|rcu.*stall|hung task|clocksource.*unstable|BUG:|I/O error|EXT4-fs error' |
	grep -v 'admin-guide/hw-vuln' | head -20 | sed 's/^/GUEST dmesg: /'
echo "GUEST done"
umount /mnt
poweroff -f
