# The same guest under QEMU gives the same digest as under khyve and the
# reference (skipped when QEMU is not installed).
. tests/lib.sh
if ! command -v qemu-system-x86_64 >/dev/null; then
	skip qemu "qemu-system-x86_64 not installed"
	exit 0
fi
if ! have_guest; then
	fail qemu "test guest not built"
	exit 0
fi
for n in 1 2; do
	name=qemu-${n}cpu
	cmd="workload=mem,fpu,smp,time rounds=2 memmb=16 seed=5"
	want=$(ref_digest $n "$cmd")
	timeout -k 5 300 qemu-system-x86_64 -enable-kvm -cpu host,-arch-capabilities -smp $n -m 256 \
		-kernel "$GUEST" -append "$cmd" -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
		-serial "file:$TMP/$name.out" -display none -nodefaults -monitor none -no-reboot \
		</dev/null >/dev/null 2>"$TMP/$name.err"
	rc=$?
	got=$(guest_digest "$TMP/$name.out")
	if [ $rc -eq 1 ] && [ "$got" = "$want" ]; then
		pass $name
	else
		fail $name "status $rc, digest '$got', reference '$want': $(tail -2 "$TMP/$name.out") $(head -c 300 "$TMP/$name.err")"
	fi
done
