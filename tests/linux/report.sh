# Guest side of tests/integration/40-linux.sh, run by scripts/linux-init as
# /mnt/run.sh from the test disk: what Linux found of khyve's machine, one
# "GUEST key=value" line each on the console (ttyS0), which the host
# checks; then the end named on the kernel command line (khyve.end=
# poweroff or reboot), through the kernel's own ACPI path.
arg() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
echo "GUEST cpus=$(grep -c ^processor /proc/cpuinfo)"
echo "GUEST online=$(cat /sys/devices/system/cpu/online)"
echo "GUEST clocksource=$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
echo "GUEST hwrng=$(cat /sys/class/misc/hw_random/rng_current 2>/dev/null)"
echo "GUEST rngbytes=$(dd if=/dev/hwrng bs=16 count=1 2>/dev/null | wc -c)"
[ -c /dev/hvc0 ] && echo "hello through hvc0" >/dev/hvc0 && echo "GUEST hvc0=written"
echo "GUEST mac=$(cat /sys/class/net/eth0/address 2>/dev/null)"
echo "GUEST msix=$(cat /sys/bus/pci/devices/*/msi_irqs/* 2>/dev/null | grep -c msix)"
echo "GUEST vda=$(cat /sys/block/vda/size)"
echo "GUEST pci=$(ls /sys/bus/pci/devices | wc -l)"
echo "GUEST acpi=$(ls /sys/bus/acpi/devices | sed 's/:.*//' | sort -u | tr '\n' ,)"
echo "GUEST vmgenid=$(ls /sys/bus/acpi/drivers/vmgenid 2>/dev/null | grep -c VMGENCTR)"
echo "GUEST console=$(cat /sys/class/tty/console/active)"
ip addr add 10.0.2.15/24 dev eth0 && ip link set eth0 up
ping -c 2 -W 5 10.0.2.1 >/dev/null 2>&1 && echo "GUEST ping=ok" || echo "GUEST ping=lost"
# a CPU-vulnerability advisory ("...: WARNING: See .../admin-guide/hw-vuln/...",
# e.g. SRSO on a Zen CPU model without its microcode bits) is about the
# CPU model, not a fault of the machine or the guest
dmesg | grep -i -E 'WARNING:|soft lockup|rcu.*stall|hung task|clocksource.*unstable|BUG:' |
	grep -v 'admin-guide/hw-vuln' | head -20 |
	sed 's/^/GUEST dmesg: /'
echo "GUEST done"
umount /mnt
case $(arg khyve.end) in
reboot) reboot -f ;;
*) poweroff -f ;;
esac
