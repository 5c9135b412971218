# virtio-console: -s errors (one line, status 4); the test guest's console
# workload (its ring-3 virtio-pci driver) writes a seeded stream through
# transmitq to a file, standard output and a UNIX socket, each compared byte
# for byte with the one testguest-ref --console-stream regenerates, and to
# null (the guest still ends with the reference digest, nothing is output).
#
# Checkpoints: the section records the bytes written so far (N), and a
# restored file backend is truncated - or extended with zero bytes - to N
# and written from there.  The original VM finishes into its file, which
# must be the stream exactly.  Then each snapshot is restored with that file
# removed: the new file must be N zero bytes (the stream has none) followed
# by exactly stream[N:], N a whole number of requests; so the saved VM wrote
# stream[:N] (its own file shows it), the restored one wrote the rest once:
# nothing lost, nothing doubled, no request split.  One snapshot is also
# restored onto a copy of the finished file: the result is the stream again.
. tests/lib.sh

CTL=$BUILD/khyvectl
RUN=$TMP/run
VMPIDS=
trap 'kill -9 $VMPIDS 2>/dev/null; rm -rf "$TMP"' EXIT

expect_error con-no-backend "virtio-console needs a backend: stdio, file:PATH, socket:PATH or null" \
	-s 4,virtio-console -k "$FIX/ok.elf" vm1
expect_error con-bad-backend "virtio-console: unknown backend 'tty'" -s 4,virtio-console,tty -k "$FIX/ok.elf" vm1
expect_error con-empty-path "virtio-console: empty path in 'file:'" -s 4,virtio-console,file: -k "$FIX/ok.elf" vm1
expect_error con-no-listener "virtio-console: connect $TMP/nosock: No such file or directory" \
	-s 4,virtio-console,socket:$TMP/nosock -k "$FIX/ok.elf" vm1
expect_error con-bad-file "virtio-console: $TMP/nodir/con: No such file or directory" \
	-s 4,virtio-console,file:$TMP/nodir/con -k "$FIX/ok.elf" vm1

if ! have_guest; then
	fail virtio-console "test guest not built"
	exit 0
fi
SEED=${KHYVE_TEST_SEED:-$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')}
RANDOM=$SEED
echo "# seeds and random moments from seed $SEED (KHYVE_TEST_SEED=$SEED to repeat)"

# vm NAME WANT KHYVE-ARGS...: run to the end; status 1 and the wanted digest
# (standard output goes to $TMP/NAME.stdout)
vm() {
	local name=$1 want=$2 rc
	shift 2
	bounded 300 "$KHYVE" --rundir "$RUN" -l "com1,file:$TMP/$name.out" --debug-exit "$@" "$name" \
		</dev/null >"$TMP/$name.stdout" 2>"$TMP/$name.err"
	rc=$?
	judge "$name" "$want" $rc
}

# same NAME FILE CMDLINE: FILE is the console stream of CMDLINE
same() {
	bounded 120 "$REF" --console-stream "$3" >"$TMP/want"
	if [ ! -s "$TMP/want" ]; then
		fail "$1" "testguest-ref --console-stream gave nothing"
	elif cmp -s "$TMP/want" "$2"; then
		pass "$1"
	else
		fail "$1" "$(wc -c <"$2") bytes, the stream has $(wc -c <"$TMP/want"): $(cmp "$TMP/want" "$2" 2>&1 | head -1)"
	fi
}

# on 2 vCPUs (core), and 1 (full)
for ncpu in $(by_set 2 "1 2"); do
	cmd="workload=console,smp rounds=$(by_set 10 40) seed=$((SEED + ncpu))"
	name=con-file-${ncpu}cpu
	echo stale >"$TMP/$name.con"	# a fresh start empties the file
	vm $name "$(ref_digest $ncpu "$cmd")" -c $ncpu -m 64M -s 4,virtio-console,file:$TMP/$name.con -k "$GUEST" -A "$cmd"
	same $name-stream "$TMP/$name.con" "$cmd"
done

cmd="workload=console rounds=$(by_set 10 25) seed=$((SEED + 3))"
vm con-stdio "$(ref_digest 1 "$cmd")" -m 64M -s 4,virtio-console,stdio -k "$GUEST" -A "$cmd"
same con-stdio-stream "$TMP/con-stdio.stdout" "$cmd"

# null: the driver's stream is taken and goes nowhere (nothing on standard output)
vm con-null "$(ref_digest 1 "$cmd")" -m 64M -s 4,virtio-console,null -k "$GUEST" -A "$cmd"
[ ! -s "$TMP/con-null.stdout" ] && pass con-null-silent ||
	fail con-null-silent "$(wc -c <"$TMP/con-null.stdout") bytes on standard output"

# a listening socket; the listener copies what it receives to a file.  It
# waits at most 60 s (scaled) for khyve to connect and 300 s for the end of
# the stream, then gives up with status 1.
cmd="workload=console,mem rounds=$(by_set 10 25) seed=$((SEED + 4))"
python3 -c '
import os, socket, sys
scale = int(os.environ.get("KHYVE_TIMEOUT_SCALE", "1"))
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1]); s.listen(1)
s.settimeout(60 * scale)
open(sys.argv[1] + ".ready", "w").close()
try:
    c, _ = s.accept()
except socket.timeout:
    sys.exit("nobody connected within %d s" % (60 * scale))
c.settimeout(300 * scale)
with open(sys.argv[2], "wb") as f:
    while True:
        try:
            b = c.recv(65536)
        except socket.timeout:
            sys.exit("the stream did not end within %d s" % (300 * scale))
        if not b:
            break
        f.write(b)
' "$TMP/con.sock" "$TMP/con-socket.con" 2>"$TMP/listener.err" &
lpid=$!
VMPIDS="$VMPIDS $lpid"
wait_until 10 ready "$TMP/con.sock.ready" $lpid
vm con-socket "$(ref_digest 1 "$cmd")" -m 64M -s 4,virtio-console,socket:$TMP/con.sock -k "$GUEST" -A "$cmd"
wait_bounded $lpid 30
lrc=$?
if [ $lrc -ne 0 ]; then
	fail con-socket-stream "the listener: $(status_text $lrc): $(cat "$TMP/listener.err")"
else
	same con-socket-stream "$TMP/con-socket.con" "$cmd"
fi

# without the device the guest says so
bounded 60 "$KHYVE" -m 64M -k "$GUEST" -A "workload=console rounds=2" --debug-exit \
	-l "com1,file:$TMP/nodev.out" nodev </dev/null >/dev/null 2>&1
rc=$?
grep -q "FAIL cpu 0: console: no virtio-console PCI device" "$TMP/nodev.out" && [ $rc -eq 3 ] && pass con-no-device ||
	fail con-no-device "$(status_text $rc) (want 3 and 'console: no virtio-console PCI device'): $(tail -1 "$TMP/nodev.out")"

# checkpoints at random moments (core: 2 on 2 vCPUs; full: 4 on 1 and 2)
ctl() {
	bounded 60 "$CTL" --rundir="$RUN" --timeout="$(tmo 60)" "$@" </dev/null >"$TMP/ctl.out" 2>"$TMP/ctl.err"
}
# restored FILE STREAM: N zero bytes, then exactly STREAM[N:], N a whole
# number of requests; prints N, or the problem on stderr with status 1
restored() {
	bounded 60 python3 -c '
import sys
got = open(sys.argv[1], "rb").read(); want = open(sys.argv[2], "rb").read()
req = int(sys.argv[3])
n = len(got) - len(got.lstrip(b"\0"))
if len(got) != len(want):
    sys.exit("%d bytes, the stream has %d (%d zero bytes first)" % (len(got), len(want), n))
if got[n:] != want[n:]:
    sys.exit("bytes after the first %d differ from the stream" % n)
if n % req:
    sys.exit("the saved VM had written %d bytes: not a whole number of %d-byte requests" % (n, req))
print(n)
' "$1" "$2" 1088
}
NCP=$(by_set 2 4)
for ncpu in $(by_set 2 "1 2"); do
	rounds=$(by_set 12 $((10 + 4 * ncpu)))
	cmd="workload=console,fpu,smp rounds=$rounds seed=$((SEED + 7 * ncpu))$FPUITERS"
	want=$(ref_digest $ncpu "$cmd")
	bounded 120 "$REF" --console-stream "$cmd" >"$TMP/stream"
	name=concp-${ncpu}cpu
	con=$TMP/$name.con
	"$KHYVE" --rundir "$RUN" -l "com1,file:$TMP/$name.out" -c $ncpu -m 64M -s 4,virtio-console,file:$con \
		-k "$GUEST" -A "$cmd" --debug-exit "$name" </dev/null >/dev/null 2>"$TMP/$name.err" &
	pid=$!
	VMPIDS="$VMPIDS $pid"
	wait_socket "$RUN/$name.sock" $pid 10
	bad=
	pick_rounds $NCP 0 $((rounds / 3))	# then at least 2/3 of the run: an idle host does a round in 5 ms
	for i in $(seq $NCP); do
		snap_at "$TMP/$name.out" "${PICKED[i - 1]}" $pid "$RUN/$name.sock" checkpoint "$TMP/$name.$i" ||
			bad="$bad $i ($SNAP_WHY);"
	done
	go $pid	# held after its last checkpoint
	wait_bounded $pid 300
	judge "$name" "$want" $?
	cp_verdict "$name-checkpoints" $NCP "$bad"
	same "$name-stream" "$con" "$cmd"
	mv "$con" "$con.orig"
	for i in $(seq $NCP); do
		if [ ! -e "$TMP/$name.$i.state" ]; then
			fail "$name-r$i" "checkpoint $i was not written"
			continue
		fi
		if ! bounded 30 "$CTL" --inspect="$TMP/$name.$i" 2>&1 | grep -q "virtio-console.4 .* ok"; then
			fail "$name-r$i-section" "no section virtio-console.4 in the snapshot"
		fi
		rm -f "$con"
		bounded 300 "$KHYVE" --rundir "$RUN" -r "$TMP/$name.$i" -l "com1,file:$TMP/$name-r$i.out" "$name-r$i" \
			</dev/null >/dev/null 2>"$TMP/$name-r$i.err"
		judge "$name-r$i" "$want" $?
		if n=$(restored "$con" "$TMP/stream" 2>"$TMP/restored.err"); then
			echo "# $name.$i: saved after $n bytes"
			pass "$name-r$i-stream"
		else
			fail "$name-r$i-stream" "$(cat "$TMP/restored.err")"
		fi
	done
	# restored onto the finished file: truncated to the saved length, the stream once
	for i in $(seq $NCP); do
		[ -e "$TMP/$name.$i.state" ] || continue
		cp "$con.orig" "$con"
		bounded 300 "$KHYVE" --rundir "$RUN" -r "$TMP/$name.$i" -l "com1,file:$TMP/$name-a.out" "$name-a" \
			</dev/null >/dev/null 2>"$TMP/$name-a.err"
		rc=$?
		[ $rc -eq 1 ] && pass "$name-append" || fail "$name-append" "$(status_text $rc), want 1: $(head -c 300 "$TMP/$name-a.err")"
		same "$name-append-stream" "$con" "$cmd"
		break
	done
done

# -s given with -r: the snapshot's slots and devices; the backend may move
snap=$TMP/concp-2cpu.1
if [ -e "$snap.state" ]; then
	expect_error restore-other-device "only their options may change; it gives 4:virtio-rnd" -r "$snap" -s 4,virtio-rnd r1
	bounded 120 "$KHYVE" --rundir "$RUN" -r "$snap" -s 4,virtio-console,file:$TMP/other \
		-l "com1,file:$TMP/other.out" other </dev/null >/dev/null 2>"$TMP/other.err"
	rc=$?
	[ $rc -eq 1 ] && [ -s "$TMP/other" ] && pass restore-other-backend ||
		fail restore-other-backend "$(status_text $rc) (want 1), $(wc -c <"$TMP/other" 2>&1) bytes: $(head -c 300 "$TMP/other.err")"
	bounded 120 "$KHYVE" --rundir "$RUN" -r "$snap" -s 4,virtio-console,file:$TMP/concp-2cpu.con \
		-l "com1,file:$TMP/same.out" same </dev/null >/dev/null 2>"$TMP/same.err"
	rc=$?
	[ $rc -eq 1 ] && pass restore-same-backend || fail restore-same-backend "$(status_text $rc), want 1: $(head -c 300 "$TMP/same.err")"
else
	fail restore-backends "no checkpoint $snap to restore with -s (checkpoint 1 failed)"
fi
