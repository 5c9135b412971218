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
# 2 vCPUs cover every workload; 1 vCPU repeats it (full set)
for n in $(by_set 2 "1 2"); do
	name=qemu-${n}cpu
	cmd="workload=mem,fpu,smp,time rounds=2 memmb=$(by_set 8 16) seed=5$FPUITERS"
	want=$(ref_digest $n "$cmd")
	bounded 300 qemu-system-x86_64 -enable-kvm -cpu host,-arch-capabilities -smp $n -m 256 \
		-kernel "$GUEST" -append "$cmd" -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
		-serial "file:$TMP/$name.out" -display none -nodefaults -monitor none -no-reboot \
		</dev/null >/dev/null 2>"$TMP/$name.err"
	rc=$?
	got=$(guest_digest "$TMP/$name.out")
	if [ -z "$want" ]; then
		fail $name "no reference digest (testguest-ref failed)"
	elif [ $rc -eq 1 ] && [ "$got" = "$want" ]; then
		pass $name
	else
		fail $name "$(status_text $rc) (want 1), digest '$got', reference '$want': $(tail -2 "$TMP/$name.out") $(head -c 300 "$TMP/$name.err")"
	fi
done
