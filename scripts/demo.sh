#!/bin/sh
# The main job in one command: the test guest on 2 vCPUs, its console on this
# terminal, then its digest checked against the host reference.
BUILD=${1:-build}
CMDLINE=${DEMO_CMDLINE:-"workload=mem,fpu,smp,time rounds=4 memmb=32 seed=1"}
NCPU=${DEMO_NCPU:-2}

if [ -z "${KHYVE_IN_TESTVM:-}" ] && ! "$(dirname "$0")/kvm-usable"; then
	echo "== no usable /dev/kvm here: the demo runs in the test machine (scripts/testvm: QEMU emulating AMD-V, 5-20x slower)"
	exec "$(dirname "$0")/testvm" sh scripts/demo.sh "$BUILD"
fi

echo "== $BUILD/khyve -c $NCPU -m 256M -k $BUILD/guest/testguest -A \"$CMDLINE\" --debug-exit demo"
"$BUILD/khyve" -c "$NCPU" -m 256M -k "$BUILD/guest/testguest" -A "$CMDLINE" --debug-exit demo
rc=$?
case $rc in
1) echo "== guest reported PASS (debug-exit 0 -> status 1)" ;;
3) echo "== guest reported FAIL (debug-exit 1 -> status 3)"; exit 1 ;;
*) echo "== khyve exited with status $rc"; exit 1 ;;
esac
echo "== host reference: $("$BUILD/guest/testguest-ref" -c "$NCPU" "$CMDLINE")"
