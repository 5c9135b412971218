# The test machine itself (scripts/testvm), run on the host by tests/run.sh
# whenever the integration tests go to the test machine (and by make
# test-full everywhere): it passes CMD's output and status through, runs
# khyve to the reference digest, and every way it can fail is one line and
# status 125 within its bound.
. tests/lib.sh

TVM=scripts/testvm
# one bound for every run here; the machine boots in 10-40 s under load
BOUND=$(tmo 600)

# tvm NAME [VAR=VALUE...] -- CMD...: run testvm with those variables, output
# in $TMP/NAME.out and .err, status in $rc
tvm() {
	local name=$1
	shift
	local vars=()
	while [ "$1" != -- ]; do
		vars+=("$1")
		shift
	done
	shift
	env "${vars[@]}" timeout -k 10 "$BOUND" "$TVM" "$@" </dev/null >"$TMP/$name.out" 2>"$TMP/$name.err"
	rc=$?
}

# (the command spans two lines: arguments holding newlines arrive whole)
tvm pass-through --  sh -c 'echo to-stdout
echo to-stderr >&2; [ -c /dev/kvm ] && [ "$KHYVE_IN_TESTVM" = 1 ] && exit 7'
if [ $rc -eq 7 ] && [ "$(cat "$TMP/pass-through.out")" = to-stdout ] &&
	grep -qx to-stderr "$TMP/pass-through.err"; then
	pass testvm-pass-through
else
	fail testvm-pass-through "status $rc (want 7: /dev/kvm there, KHYVE_IN_TESTVM=1), stdout '$(head -c 200 "$TMP/pass-through.out")', stderr '$(head -c 300 "$TMP/pass-through.err")'"
fi

# --linux: a machine of one vCPU, where Linux guests boot (in one of two
# on one thread they hang; scripts/testvm says why)
tvm linux-cpus KHYVE_TESTVM_CPUS= -- --linux nproc
if [ $rc -eq 0 ] && [ "$(cat "$TMP/linux-cpus.out")" = 1 ]; then
	pass testvm-linux-one-cpu
else
	fail testvm-linux-one-cpu "status $rc (want 0), nproc '$(head -c 100 "$TMP/linux-cpus.out")' (want 1): $(tail -2 "$TMP/linux-cpus.err" | tr '\n' ' ')"
fi

# the issue's own acceptance command, smaller: khyve in the test machine
# prints the digest the host reference computes
cmd="workload=mem,smp,fpu rounds=1 memmb=4 seed=7"
want=$(ref_digest 2 "$cmd")
tvm digest -- "$KHYVE" -c 2 -m 64M -k "$GUEST" -A "$cmd" --debug-exit -l com1,stdio vm
got=$(guest_digest "$TMP/digest.out")
if [ $rc -eq 1 ] && [ -n "$want" ] && [ "$got" = "$want" ]; then
	pass testvm-khyve-digest
else
	fail testvm-khyve-digest "status $rc (want 1), digest '$got' (reference '$want'): $(tail -3 "$TMP/digest.err" | tr '\n' ' ')"
fi

# Many VMs one after another, as the suites start them.  The first VM's
# creation and the last one's destruction flip kernel static keys, which
# the kernel patches with int3; under QEMU's multi-threaded TCG a vCPU can
# keep running a stale translation of that int3 and loop on it forever.
# Without the VM testvm-init holds for the machine's life, this hung the
# machine within ~150 VMs.  The heartbeat bound is short so that such a hang
# fails here in minutes, not in the suite's 300 s per script.
n=300
tvm many-vms KHYVE_TESTVM_HEARTBEAT_TIMEOUT=$(tmo 90) -- sh -c '
	[ -e /run/testvm-kvm-held ] || { echo "no VM held by testvm-init"; exit 9; }
	ok=0 i=0
	while [ $i -lt '$n' ]; do
		"$0" -c 2 --debug-exit -k "$1" vm >/dev/null 2>&1
		[ $? -eq 1 ] && ok=$((ok + 1))
		i=$((i + 1))
	done
	echo "ok $ok"' "$KHYVE" "$FIX/ok.elf"
if [ $rc -eq 0 ] && [ "$(cat "$TMP/many-vms.out")" = "ok $n" ]; then
	pass testvm-many-vms
else
	fail testvm-many-vms "status $rc, '$(head -c 200 "$TMP/many-vms.out")' (want 'ok $n'): $(grep '^testvm: [^ ]' "$TMP/many-vms.err" | head -1)"
fi

# expect_tvm NAME "message part": status 125, the message on the last
# "testvm:" line that is not console echo
expect_tvm() {
	local name=$1 want=$2 line
	line=$(grep '^testvm: ' "$TMP/$name.err" | grep -v '^testvm:   ' | head -1)
	if [ $rc -eq 125 ] && printf '%s' "$line" | grep -qF -- "$want"; then
		pass "testvm-$name"
	else
		fail "testvm-$name" "status $rc (want 125), first line '$line' lacks '$want'"
	fi
}

tvm no-qemu KHYVE_TESTVM_QEMU=/nonexistent/qemu -- true
expect_tvm no-qemu "/nonexistent/qemu not found"

# no init in the initramfs by that name: the kernel panics
tvm panic KHYVE_TESTVM_APPEND=rdinit=/no-such-init -- true
expect_tvm panic "kernel panicked"

tvm boot-timeout KHYVE_TESTVM_BOOT_TIMEOUT=1 -- true
expect_tvm boot-timeout "did not start within 1 s"

# the init writes a heartbeat every 5 s: with a bound of 1 s it looks stuck
tvm heartbeat KHYVE_TESTVM_HEARTBEAT_TIMEOUT=1 -- sleep 600
expect_tvm heartbeat "stopped answering"

tvm total-timeout KHYVE_TESTVM_TIMEOUT=$(tmo 90) -- sleep 600
expect_tvm total-timeout "did not finish within"
