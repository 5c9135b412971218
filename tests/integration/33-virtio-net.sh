# virtio-net: every bad -s option and a tap that does not exist (one line,
# status 4).  Then, as root with /dev/net/tun, in a network namespace of its
# own: devices that are no usable tap (a tun, lo, a tap another VM holds);
# the test guest's net workload on 1 and 2 vCPUs against tap_echo.py (plain
# and with noise: foreign, malformed and duplicate frames) with the
# reference digest; frames too long for the guest's buffers dropped; the
# MAC the guest uses (mac= and the default);
# checkpoints at random moments (random rounds), each restored in a fresh
# process on the same tap once the original is gone, and one on a second
# tap named with -s;
# mac= on restore; the tap deleted under a running VM (one warning, the VM
# runs on).  A snapshot that caught frames in flight (their echoes go to the
# original VM) must restore to a VM that finishes: the guest resends frames
# whose echo does not come (also checked with an echo that drops frames, and
# with a snapshot taken while the echo is stopped, so that it surely holds
# frames whose echoes the restored VM never gets).
. tests/lib.sh

CTL=$BUILD/khyvectl
RUN=$TMP/run
NS=khyve-t$$
VMPIDS=
ECHOPIDS=
cleanup() {
	kill -9 $VMPIDS 2>/dev/null
	echo_stop
	[ -e "/run/netns/$NS" ] && ip netns del "$NS" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT

K="-k $FIX/ok.elf"
expect_error net-no-options "virtio-net needs a tap device: -s SLOT,virtio-net,tap=NAME[,mac=MAC]" \
	-s 4,virtio-net $K vm1
expect_error net-unknown-option "virtio-net: unknown option 'vlan' (tap=NAME, mac=MAC)" \
	-s 4,virtio-net,tap=t0,vlan=3 $K vm1
expect_error net-no-tap "virtio-net: no tap device in 'mac=52:54:00:00:00:01' (tap=NAME)" \
	-s 4,virtio-net,mac=52:54:00:00:00:01 $K vm1
expect_error net-two-taps "virtio-net: more than one tap device in 'tap0,tap=tap1'" -s 4,virtio-net,tap0,tap=tap1 $K vm1
expect_error net-empty-option "virtio-net: empty option in 'tap=t0,,mac=52:54:00:00:00:01'" \
	-s 4,virtio-net,tap=t0,,mac=52:54:00:00:00:01 $K vm1
expect_error net-empty-tap "virtio-net: invalid tap name '' (1-15 characters, none of '/', ':', '%' or spaces)" \
	-s 4,virtio-net,tap= $K vm1
expect_error net-long-tap "virtio-net: invalid tap name '0123456789abcdef'" -s 4,virtio-net,tap=0123456789abcdef $K vm1
expect_error net-slash-tap "virtio-net: invalid tap name 'a/b'" -s 4,virtio-net,tap=a/b $K vm1
expect_error net-pattern-tap "virtio-net: invalid tap name 'tap%d'" -s 4,virtio-net,tap=tap%d $K vm1
expect_error net-bad-mac "virtio-net: invalid MAC address '52:54:00:zz:00:01' (want xx:xx:xx:xx:xx:xx in hex)" \
	-s 4,virtio-net,tap=t0,mac=52:54:00:zz:00:01 $K vm1
expect_error net-short-mac "virtio-net: invalid MAC address '52:54:00:00:01'" -s 4,virtio-net,tap=t0,mac=52:54:00:00:01 $K vm1
expect_error net-multicast-mac "virtio-net: MAC address '01:00:5e:00:00:01' is a multicast address" \
	-s 4,virtio-net,tap=t0,mac=01:00:5e:00:00:01 $K vm1
expect_error net-zero-mac "virtio-net: MAC address '00:00:00:00:00:00' is all zeros" \
	-s 4,virtio-net,tap=t0,mac=00:00:00:00:00:00 $K vm1
expect_error net-two-macs "virtio-net: mac= given twice" \
	-s 4,virtio-net,tap=t0,mac=52:54:00:00:00:01,mac=52:54:00:00:00:02 $K vm1
expect_error net-no-such-tap \
	"virtio-net: tap device 'khyvenotap0' does not exist (create it first: ip tuntap add dev khyvenotap0 mode tap)" \
	-s 4,virtio-net,tap=khyvenotap0 $K vm1
expect_error net-no-such-tap-bhyve "virtio-net: tap device 'khyvenotap0' does not exist" -s 4,virtio-net,khyvenotap0 $K vm1

if [ "$(id -u)" != 0 ] || [ ! -c /dev/net/tun ] || ! command -v ip >/dev/null; then
	skip virtio-net-tap "needs root, /dev/net/tun and ip(8)"
	exit 0
fi
if ! ip netns add "$NS" 2>"$TMP/netns.err"; then
	skip virtio-net-tap "ip netns add: $(cat "$TMP/netns.err")"
	exit 0
fi
nsx() { ip netns exec "$NS" "$@"; }
mktap() {
	nsx ip tuntap add dev "$1" mode tap && nsx ip link set "$1" up &&
		nsx sysctl -qw "net.ipv6.conf.$1.disable_ipv6=1"
}
if ! mktap ktap0 || ! mktap ktap1 || ! nsx ip tuntap add dev ktun0 mode tun; then
	fail virtio-net-tap "cannot create taps in namespace $NS"
	exit 0
fi
# khyve in the namespace, for expect_error
printf '#!/bin/sh\nexec ip netns exec %s "%s" "$@"\n' "$NS" "$KHYVE" >"$TMP/khyve-ns"
chmod +x "$TMP/khyve-ns"
ns_expect_error() {
	local k=$KHYVE
	KHYVE=$TMP/khyve-ns
	expect_error "$@"
	KHYVE=$k
}

ns_expect_error net-tun-not-tap "virtio-net: 'ktun0' is not a single-queue tap device" -s 4,virtio-net,tap=ktun0 $K vm1
ns_expect_error net-lo-not-tap "virtio-net: 'lo' is not a single-queue tap device" -s 4,virtio-net,tap=lo $K vm1
ns_expect_error net-host-tap-invisible "virtio-net: tap device 'khyvenotap0' does not exist" \
	-s 4,virtio-net,tap=khyvenotap0 $K vm1

if ! have_guest; then
	fail virtio-net "test guest not built"
	exit 0
fi
if [ -z "$(ref_digest 1 "workload=net rounds=1")" ]; then
	fail virtio-net-guest "testguest-ref gave no digest for the net workload"
	exit 0
fi
SEED=${KHYVE_TEST_SEED:-$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')}
RANDOM=$SEED
echo "# seeds and random moments from seed $SEED (KHYVE_TEST_SEED=$SEED to repeat)"

# echo_start TAP [--noise]: tap_echo.py on TAP until echo_stop.  (No
# shell function in the background: killing one would run the EXIT trap.)
echo_start() {
	local ready=$TMP/echo-$1.ready
	rm -f "$ready"
	ip netns exec "$NS" python3 tests/integration/tap_echo.py $2 "$1" "$ready" 2>"$TMP/echo-$1.err" &
	ECHOPIDS="$ECHOPIDS $!"
	wait_until 5 ready "$ready" $! && return 0
	fail "echo-$1" "tap_echo.py did not start: $(head -c 300 "$TMP/echo-$1.err")"
	return 1
}
# echo_stop: SIGTERM to the echoes (they print their counts and exit)
echo_stop() {
	local p
	for p in $ECHOPIDS; do
		kill $p 2>/dev/null
		wait_bounded $p 10 2>/dev/null
	done
	ECHOPIDS=
}

# check NAME WANT RC: status 1 and the wanted digest in $TMP/NAME.out
check() { judge "$@"; }

# vm NAME WANT KHYVE-ARGS...: run to the end in the namespace
vm() {
	local name=$1 want=$2
	shift 2
	bounded 300 ip netns exec "$NS" "$KHYVE" --rundir "$RUN" -l "com1,file:$TMP/$name.out" --debug-exit \
		"$@" "$name" </dev/null >/dev/null 2>"$TMP/$name.err"
	check "$name" "$want" $?
}

# src_mac_start TAP OUT: the source MAC of the first test-guest frame seen
# on TAP goes to OUT; returns once listening, $macpid to wait for (it gives
# up after 60 s, scaled)
SRC_MAC_PY='
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x88b5))
s.bind((sys.argv[1], 0x88b5))
open(sys.argv[2], "w").close()
while True:
    d, a = s.recvfrom(65536)
    if a[2] != 4 and len(d) >= 14:
        print(":".join("%02x" % b for b in d[6:12]))
        break
'
src_mac_start() {
	rm -f "$TMP/mac.ready"
	ip netns exec "$NS" timeout "$(tmo 60)" python3 -c "$SRC_MAC_PY" "$1" "$TMP/mac.ready" >"$2" &
	macpid=$!
	wait_until 5 ready "$TMP/mac.ready" $macpid
}

echo_start ktap0 || exit 0
# 2 vCPUs (core), and 1 (full)
for ncpu in $(by_set 2 "1 2"); do
	cmd="workload=net,smp rounds=$(by_set 10 $((20 + 10 * ncpu))) netframes=32 seed=$((SEED + ncpu))"
	vm net-${ncpu}cpu "$(ref_digest $ncpu "$cmd")" -c $ncpu -m 64M -s 4,virtio-net,tap=ktap0 -k "$GUEST" -A "$cmd"
done
# bhyve's spelling, a given MAC, and frames of every size the workload makes
src_mac_start ktap0 "$TMP/mac1"
cmd="workload=net rounds=$(by_set 3 10) netframes=200 seed=$((SEED + 3))"
vm net-mac "$(ref_digest 1 "$cmd")" -m 64M -s 4,virtio-net,ktap0,mac=02:11:22:33:44:55 -k "$GUEST" -A "$cmd"
wait_bounded $macpid 10
[ "$(cat "$TMP/mac1")" = 02:11:22:33:44:55 ] && pass net-mac-used || fail net-mac-used "guest sent from '$(cat "$TMP/mac1")'"
src_mac_start ktap0 "$TMP/mac2"
cmd="workload=net rounds=2 netframes=8 seed=$((SEED + 4))"
vm net-default-mac "$(ref_digest 1 "$cmd")" -m 64M -s 4,virtio-net,tap=ktap0 -k "$GUEST" -A "$cmd"
wait_bounded $macpid 10
case $(cat "$TMP/mac2") in
52:54:00:??:??:??) pass net-default-mac-used ;;
*) fail net-default-mac-used "guest sent from '$(cat "$TMP/mac2")'" ;;
esac
echo_stop
# noise: frames of another ethertype, with a bad magic, and duplicates
echo_start ktap0 --noise || exit 0
cmd="workload=net,fpu,smp rounds=$(by_set 4 30) netframes=48 seed=$((SEED + 5))$FPUITERS"
vm net-noise "$(ref_digest 2 "$cmd")" -c 2 -m 64M -s 4,virtio-net,tap=ktap0 -k "$GUEST" -A "$cmd"
echo_stop
# lost frames: an echo that drops every fifth frame it gets; the guest resends
echo_start ktap0 "--drop 5" || exit 0
cmd="workload=net,smp rounds=10 netframes=32 seed=$((SEED + 10))"
vm net-lossy "$(ref_digest 2 "$cmd")" -c 2 -m 64M -s 4,virtio-net,tap=ktap0 -k "$GUEST" -A "$cmd"
echo_stop
dropped=$(sed -n 's/^\([0-9]*\) dropped$/\1/p' "$TMP/echo-ktap0.err")
[ "${dropped:-0}" -ge 64 ] && pass net-lossy-dropped ||
	fail net-lossy-dropped "want at least 64 frames dropped; tap_echo.py: $(tr '\n' ' ' <"$TMP/echo-ktap0.err")"

# frames longer than any receive buffer (the tap's MTU raised): dropped, not
# cut to fit; each echo comes after such a longer copy of itself, which the
# guest would take for a wrong echo if it were delivered cut
OVERSIZE_PY='
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x88b5))
s.bind((sys.argv[1], 0x88b5))
open(sys.argv[2], "w").close()
while True:
    d, a = s.recvfrom(65536)
    if a[2] != 4 and len(d) >= 14:
        s.send(d + bytes(range(256)) * 8)
        s.send(d)
'
nsx ip link set ktap0 mtu 9000
rm -f "$TMP/oversize.ready"
ip netns exec "$NS" timeout "$(tmo 900)" python3 -c "$OVERSIZE_PY" ktap0 "$TMP/oversize.ready" 2>"$TMP/oversize.err" &
ECHOPIDS="$ECHOPIDS $!"
wait_until 5 ready "$TMP/oversize.ready" $!
cmd="workload=net rounds=10 netframes=64 seed=$((SEED + 6))"
vm net-oversize "$(ref_digest 1 "$cmd")" -v -m 64M -s 4,virtio-net,tap=ktap0 -k "$GUEST" -A "$cmd"
# 640 frames each way, each echo after a copy too long and dropped; more
# if the guest resent frames whose echo was late (the echoes of the last
# resends may come after the guest has finished)
set -- $(sed -n 's/.*virtio-net.4: tx \([0-9]*\) frames (0 dropped, 0 bad chains), rx \([0-9]*\) frames (\([0-9]*\) dropped, 0 bad chains).*/\1 \2 \3/p' \
	"$TMP/net-oversize.err")
if [ $# = 3 ] && [ $2 -ge 640 ] && [ $3 -ge 640 ] && [ $1 -ge $2 ] && [ $1 -ge $3 ]; then
	pass net-oversize-dropped
else
	fail net-oversize-dropped "want tx >= rx >= 640 and 640 dropped: $(grep virtio-net "$TMP/net-oversize.err")"
fi
echo_stop
nsx ip link set ktap0 mtu 1500

# khyvectl in the namespace
ctl() {
	bounded 60 ip netns exec "$NS" "$CTL" --rundir="$RUN" --timeout="$(tmo 60)" "$@" \
		</dev/null >"$TMP/ctl.out" 2>"$TMP/ctl.err"
}

# a snapshot that surely holds frames in flight: the echo is stopped (frames
# wait in its socket), the VM suspended, and the echo let go on again, which
# echoes those frames to nobody.  Restored after the checkpoints below, more
# than the guest's stall timeout (2^35 TSC cycles) later: the restored VM
# resends the lost frames, and its TSC (the host's, under PVM) having jumped
# is no stall.  On ktap1, which the VMs in between do not use; restored
# last.
echo_start ktap1 || exit 0
echopid=${ECHOPIDS##* }
cmd="workload=net rounds=200 netframes=32 seed=$((SEED + 11))"
inflight_want=$(ref_digest 1 "$cmd")
name=net-inflight
ip netns exec "$NS" "$KHYVE" --rundir "$RUN" -l "com1,file:$TMP/$name.out" -m 64M \
	-s 4,virtio-net,tap=ktap1 -k "$GUEST" -A "$cmd" --debug-exit "$name" </dev/null >/dev/null 2>"$TMP/$name.err" &
pid=$!
VMPIDS="$VMPIDS $pid"
wait_line "$TMP/$name.out" '^round 3' $pid 5
kill -STOP $echopid
sleep "$(tmo 0.2)"	# the guest sends frames the echo does not answer
ctl --vm=$name --suspend="$TMP/$name.snap" || echo "# suspend: $(cat "$TMP/ctl.err")"
wait_bounded $pid 300
rc=$?
inflight_at=$SECONDS
kill -CONT $echopid
sleep "$(tmo 0.2)"	# the echo answers them, to nobody
echo_stop
inflight=
if [ $rc -ne 5 ] || [ ! -e "$TMP/$name.snap.state" ]; then
	fail "$name-suspend" "$(status_text $rc), want 5: $(tail -1 "$TMP/$name.out") $(head -c 300 "$TMP/$name.err")"
elif ! grep -q '^round ' "$TMP/$name.out" || grep -q '^round 200' "$TMP/$name.out"; then
	fail "$name-suspend" "not suspended inside the run: $(tail -1 "$TMP/$name.out")"
else
	pass "$name-suspend"
	inflight=1
fi

# checkpoints at random rounds (core: 2 on 2 vCPUs; full: 4 on 1 and 2);
# each restored once the original has let go of the tap.  Rounds take a
# few ms: the moments are drawn from the first half of the run.
echo_start ktap0 || exit 0
NCP=$(by_set 2 4)
first=
for ncpu in $(by_set 2 "1 2"); do
	rounds=$(by_set 300 $((1500 + 500 * ncpu)))
	cmd="workload=net,smp rounds=$rounds netframes=32 seed=$((SEED + 7 * ncpu))"
	want=$(ref_digest $ncpu "$cmd")
	name=netcp-${ncpu}cpu
	ip netns exec "$NS" "$KHYVE" --rundir "$RUN" -l "com1,file:$TMP/$name.out" -c $ncpu -m 64M \
		-s 4,virtio-net,tap=ktap0 -k "$GUEST" -A "$cmd" --debug-exit "$name" </dev/null >/dev/null 2>"$TMP/$name.err" &
	pid=$!
	VMPIDS="$VMPIDS $pid"
	wait_socket "$RUN/$name.sock" $pid 10
	if [ -z "$first" ]; then
		first=$name first_cmd=$cmd first_ncpu=$ncpu
		ns_expect_error net-tap-busy "virtio-net: tap 'ktap0' is busy (another process is attached to it)" \
			-s 4,virtio-net,tap=ktap0 $K busyvm
	fi
	bad=
	pick_rounds $NCP 0 $((rounds / 2))
	for i in $(seq $NCP); do
		snap_at "$TMP/$name.out" "${PICKED[i - 1]}" $pid "$RUN/$name.sock" checkpoint "$TMP/$name.$i" ||
			bad="$bad $i ($SNAP_WHY);"
	done
	go $pid	# held after its last checkpoint
	wait_bounded $pid 300
	check "$name" "$want" $?
	cp_verdict "$name-checkpoints" $NCP "$bad"
	for i in $(seq $NCP); do
		if [ ! -e "$TMP/$name.$i.state" ]; then
			fail "$name-r$i" "checkpoint $i was not written"
			continue
		fi
		if ! bounded 30 "$CTL" --inspect="$TMP/$name.$i" 2>&1 | grep -q "virtio-net.4 .* ok"; then
			fail "$name-r$i-section" "no section virtio-net.4 in the snapshot"
		fi
		bounded 300 ip netns exec "$NS" "$KHYVE" --rundir "$RUN" -r "$TMP/$name.$i" \
			-l "com1,file:$TMP/$name-r$i.out" "$name-r$i" </dev/null >/dev/null 2>"$TMP/$name-r$i.err"
		check "$name-r$i" "$want" $?
	done
done
echo_stop

snap=$TMP/$first.2
if [ -e "$snap.state" ]; then
	want=$(ref_digest $first_ncpu "$first_cmd")
	# another tap, named with -s on restore
	echo_start ktap1 || exit 0
	bounded 300 ip netns exec "$NS" "$KHYVE" --rundir "$RUN" -r "$snap" -s 4,virtio-net,tap=ktap1 \
		-l "com1,file:$TMP/net-other-tap.out" net-other-tap </dev/null >/dev/null 2>"$TMP/net-other-tap.err"
	check net-other-tap "$want" $?
	# a clone's own MAC: accepted (the test guest keeps the one it read
	# at start, so the digest is unchanged; 40-linux.sh checks that Linux
	# sees it after a rebind)
	bounded 300 ip netns exec "$NS" "$KHYVE" --rundir "$RUN" -r "$snap" -s 4,virtio-net,tap=ktap1,mac=02:00:00:00:00:01 \
		-l "com1,file:$TMP/net-restore-other-mac.out" net-restore-other-mac </dev/null >/dev/null 2>"$TMP/net-restore-other-mac.err"
	check net-restore-other-mac "$want" $?
	echo_stop
	expect_error net-restore-other-device "only their options may change; it gives 4:virtio-rnd" -r "$snap" -s 4,virtio-rnd r1
else
	fail net-other-tap "no checkpoint $snap to restore (checkpoint 2 failed)"
fi

# the tap deleted under a running VM: one warning, link down, the VM runs on
# (rounds enough that the guest is still at work when the deletion lands:
# with 5, a busy test machine's ip(8) took longer than the guest's rest)
cmd="workload=mem,smp rounds=$(by_set 20 30) seed=$((SEED + 9))"
want=$(ref_digest 1 "$cmd")
ip netns exec "$NS" "$KHYVE" --rundir "$RUN" -l "com1,file:$TMP/net-tap-gone.out" -m 64M -s 4,virtio-net,tap=ktap0 \
	-k "$GUEST" -A "$cmd" --debug-exit net-tap-gone </dev/null >/dev/null 2>"$TMP/net-tap-gone.err" &
pid=$!
VMPIDS="$VMPIDS $pid"
wait_line "$TMP/net-tap-gone.out" '^round 1' $pid 60	# the guest at work, rounds to go
nsx ip link del ktap0
at_del=$(tail -1 "$TMP/net-tap-gone.out" | tr -d '\r')	# where the guest was then
wait_bounded $pid 300
check net-tap-gone "$want" $?
if [ "$(grep -c "virtio-net.4: tap 'ktap0': read: .*; link down, frames dropped from now on" "$TMP/net-tap-gone.err")" = 1 ] &&
	[ "$(wc -l <"$TMP/net-tap-gone.err")" = 1 ]; then
	pass net-tap-gone-warning
else
	fail net-tap-gone-warning "want one line 'link down, frames dropped from now on' on stderr (the guest's last line when the tap was gone: '$at_del'): $(head -c 300 "$TMP/net-tap-gone.err")"
fi

# the snapshot with frames in flight, restored at least 16 s after it was
# taken: a wall-clock minimum (more than the guest's stall timeout under
# PVM, where the restored TSC jumps by that time), not a wait for khyve or
# the guest, so not scaled
if [ -n "$inflight" ]; then
	[ $((SECONDS - inflight_at)) -lt 16 ] && sleep $((16 - (SECONDS - inflight_at)))
	echo_start ktap1 || exit 0
	bounded 300 ip netns exec "$NS" "$KHYVE" --rundir "$RUN" -r "$TMP/net-inflight.snap" \
		-l "com1,file:$TMP/net-inflight-r.out" net-inflight-r </dev/null >/dev/null 2>"$TMP/net-inflight-r.err"
	check net-inflight-r "$inflight_want" $?
	echo_stop
fi
