#!/bin/bash
# Run the khyve test guest under QEMU/KVM.
#
#   guest/run-qemu.sh NCPU MEM "CMDLINE"
#
# MEM is passed to QEMU's -m (e.g. 256, 64, 4G). Prints the serial output.
# Exit status: 0 the guest printed PASS, 1 it printed FAIL, 2 anything else
# (no final line, timeout, QEMU error).
# Environment: TESTGUEST (image, default $BUILD/guest/testguest, BUILD
# default "build"), QEMU (default qemu-system-x86_64), TIMEOUT (seconds,
# default 120), QEMU_EXTRA (extra QEMU arguments).
set -u

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
	echo "usage: $0 NCPU MEM [\"CMDLINE\"]" >&2
	exit 2
fi
ncpu=$1
mem=$2
cmdline=${3-}
image=${TESTGUEST:-${BUILD:-build}/guest/testguest}
qemu=${QEMU:-qemu-system-x86_64}
timeout=${TIMEOUT:-120}

if [ ! -f "$image" ]; then
	echo "$0: no guest image $image (make $image)" >&2
	exit 2
fi

out=$(mktemp "${TMPDIR:-/tmp}/testguest.XXXXXX") || exit 2
trap 'rm -f "$out"' EXIT INT TERM

# shellcheck disable=SC2086
timeout --foreground -k 5 "$timeout" "$qemu" -enable-kvm -cpu host,-arch-capabilities \
	-smp "$ncpu" -m "$mem" -kernel "$image" -append "$cmdline" \
	-device isa-debug-exit,iobase=0xf4,iosize=0x04 \
	-serial stdio -display none -monitor none -no-reboot -nodefaults \
	${QEMU_EXTRA:-} </dev/null | tee "$out"
rc=${PIPESTATUS[0]}
# isa-debug-exit: QEMU exits with (value << 1) | 1, so 1 = pass, 3 = fail
final=$(grep -a '^khyve-testguest: \(PASS\|FAIL\)' "$out" | tail -n 1)
case "$rc:$final" in
"1:khyve-testguest: PASS "*) exit 0 ;;
*":khyve-testguest: FAIL"*) exit 1 ;;
esac
echo "$0: no result from the guest (QEMU status $rc; 124 = timeout after ${timeout}s)" >&2
exit 2
