# The test guest: every workload, 1/2/4 vCPUs, 64 MiB and (full set) 4 GiB;
# each digest must equal the host reference.
. tests/lib.sh
if ! have_guest; then
	fail guest "test guest not built ($GUEST, $REF)"
	exit 0
fi

# every workload at once on 1, 2 and 4 vCPUs (core: a smaller run)
ALL="workload=mem,fpu,smp,time rounds=$(by_set 2 3) memmb=$(by_set 8 16) seed=7$FPUITERS"
for n in 1 2 4; do
	run_guest "all-${n}cpu-64M" $n 64M "$ALL"
done
# each workload alone on each vCPU count, and RAM above the 3-4 GiB hole
# (the guest pages all of it and works across it): repetitions, full set
if full_only; then
	for w in mem fpu smp time; do
		for n in 1 2 4; do
			run_guest "$w-${n}cpu" $n 64M "workload=$w rounds=2 memmb=8 seed=3"
		done
	done
	run_guest all-2cpu-4G 2 4G "workload=mem,fpu,smp,time rounds=2 memmb=64 seed=11"
fi
# the ELF64 image boots too (khyve accepts both classes)
run_guest elf64-2cpu 2 64M "$ALL" "$GUEST64"

# a different seed must give a different digest (the digest is not constant)
a=$(ref_digest 2 "workload=mem rounds=1 memmb=4 seed=1")
b=$(ref_digest 2 "workload=mem rounds=1 memmb=4 seed=2")
if [ -n "$a" ] && [ -n "$b" ] && [ "$a" != "$b" ]; then
	pass seed-changes-digest
else
	fail seed-changes-digest "seeds 1 and 2 gave digests '$a' and '$b': want two different ones"
fi

# the guest's FAIL path (fault=KIND, the last vCPU at round 1): each fault
# ends the run with the guest's FAIL line, exit status 3 (debug exit 1).
# df pushes on an unmapped ring-0 stack: the #PF cannot be delivered, and
# the double fault must reach its handler on the IST stack; without that
# the guest triple-faults (also status 3) and says nothing.
for kv in gp:13 ud:6 pf:14 kpf:14 df:8 sys:; do
	k=${kv%%:*} vec=${kv#*:}
	name=fault-$k
	bounded 120 "$KHYVE" -c 2 -m 64M -k "$GUEST" -A "workload=mem rounds=2 memmb=4 seed=1 fault=$k" \
		--debug-exit -l "com1,file:$TMP/$name.out" "t-$$" </dev/null >/dev/null 2>"$TMP/$name.err"
	rc=$?
	if [ -n "$vec" ]; then
		want="FAIL exception $vec at "
	else
		want="FAIL .*unknown system call"
	fi
	if [ $rc -eq 3 ] && grep -q "^khyve-testguest: $want" "$TMP/$name.out"; then
		pass "$name"
	else
		fail "$name" "$(status_text $rc) (want 3), want '$want': $(tail -2 "$TMP/$name.out" | tr '\n' ' ') $(head -c 200 "$TMP/$name.err")"
	fi
done
