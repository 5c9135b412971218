#!/bin/bash
# Cross-check the test guest under QEMU/KVM against the host reference:
# every run must print PASS with the digest testguest-ref computes.
#
#   guest/check-qemu.sh [quick]
#
# Environment: BUILD (default build), TIMEOUT per run (default 120).
set -u
here=$(cd "$(dirname "$0")" && pwd)
build=${BUILD:-build}
ref=$build/guest/testguest-ref
export TESTGUEST=${TESTGUEST:-$build/guest/testguest}
fails=0

check() {
	local n=$1 mem=$2 cmd=$3 out rc got want
	out=$("$here/run-qemu.sh" "$n" "$mem" "$cmd" 2>&1)
	rc=$?
	got=$(printf '%s\n' "$out" | sed -n 's/^khyve-testguest: PASS \(digest=[0-9a-f]*\)$/\1/p')
	want=$("$ref" -c "$n" "$cmd")
	if [ $rc -eq 0 ] && [ "$got" = "$want" ]; then
		echo "ok   -smp $n -m $mem \"$cmd\" $got"
	else
		echo "FAIL -smp $n -m $mem \"$cmd\": status $rc, guest '$got', reference '$want'"
		printf '%s\n' "$out" | tail -n 5 | sed 's/^/     /'
		fails=$((fails + 1))
	fi
}

all="workload=mem,fpu,smp,time rounds=4 memmb=16 seed=1"
for n in 1 2 4; do
	check "$n" 256 "$all"
done
check 2 64 "$all"
check 2 4G "$all"
if [ "${1-}" != quick ]; then
	for w in mem fpu smp time; do
		check 2 256 "workload=$w rounds=4 memmb=16 seed=1"
	done
	check 2 256 "workload=mem,fpu,smp,time rounds=3 memmb=8 seed=12345"
	check 1 256 "workload=fpu rounds=2 fpu=sse"
	check 1 256 "workload=fpu rounds=2 fpu=avx2"
	check 3 256 "console=ttyS0 workload=smp,mem rounds=2 memmb=30 seed=0xdeadbeef"
	# a malformed value must FAIL
	if "$here/run-qemu.sh" 1 256 "rounds=x" >/dev/null 2>&1; [ $? -eq 1 ]; then
		echo "ok   bad command line -> FAIL"
	else
		echo "FAIL bad command line did not FAIL"
		fails=$((fails + 1))
	fi
fi
echo "$fails failure(s)"
[ $fails -eq 0 ]
