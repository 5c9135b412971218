# A hostile guest (issue 4 section 6): the test guest's hostile workload
# attacks every virtio device it finds with garbage rings, descriptors,
# queue sizes, configuration and status writes and malformed requests
# (guest/hostile.c; testguest-ref --hostile-attacks lists them), resets
# each device after each attack and checks that one valid request then
# succeeds and that nothing outside the buffers it gave was written.
#
# With virtio-rnd, -console, -blk and (as root, with /dev/net/tun, in a
# network namespace of its own) -net: the workload on 1 vCPU with every
# attack kind on every device, and on 2 vCPUs next to smp, each with the
# reference digest, no sanitizer report, no warning from khyve, and the
# control socket answering meanwhile; a read-only disk; a run checkpointed
# while its devices are broken (DEVICE_NEEDS_RESET held by hosthold=),
# each checkpoint restored to the reference digest; and snapshots taken
# right after the two attacks that leave state a restore must also accept
# (reserved status bits, features never offered).
. tests/lib.sh

CTL=$BUILD/khyvectl
RUN=$TMP/run
NS=khyve-h$$
VMPIDS=
ECHOPID=
cleanup() {
	kill -9 $VMPIDS 2>/dev/null
	[ -n "$ECHOPID" ] && kill "$ECHOPID" 2>/dev/null && wait_bounded "$ECHOPID" 10
	[ -e "/run/netns/$NS" ] && ip netns del "$NS" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT

if ! have_guest; then
	fail hostile "test guest not built"
	exit 0
fi
if [ -z "$(ref_digest 1 "workload=hostile rounds=1")" ]; then
	fail hostile "testguest-ref gave no digest for the hostile workload"
	exit 0
fi
SEED=${KHYVE_TEST_SEED:-$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')}
RANDOM=$SEED
echo "# seeds and moments from seed $SEED (KHYVE_TEST_SEED=$SEED to repeat)"

# virtio-net on a tap in a namespace of our own, with an echo that also
# survives the frames the tap cannot send back (the guest sends 64 KiB ones)
NET=
NSX=
ECHO_PY='
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x88b5))
s.bind((sys.argv[1], 0x88b5))
open(sys.argv[2], "w").close()
while True:
    d, a = s.recvfrom(1 << 17)
    if a[2] != 4 and len(d) >= 14:
        try:
            s.send(d)
        except OSError:
            pass
'
if [ "$(id -u)" = 0 ] && [ -c /dev/net/tun ] && command -v ip >/dev/null && ip netns add "$NS" 2>/dev/null; then
	if ip netns exec "$NS" ip tuntap add dev htap0 mode tap && ip netns exec "$NS" ip link set htap0 up &&
		ip netns exec "$NS" sysctl -qw net.ipv6.conf.htap0.disable_ipv6=1; then
		ip netns exec "$NS" timeout "$(tmo 900)" python3 -c "$ECHO_PY" htap0 "$TMP/echo.ready" 2>"$TMP/echo.err" &
		ECHOPID=$!
		wait_until 5 ready "$TMP/echo.ready" $ECHOPID
		NET="-s 6,virtio-net,tap=htap0"
		NSX="ip netns exec $NS"
	else
		fail hostile-net "cannot create a tap in namespace $NS"
	fi
else
	echo "# without virtio-net: needs root, /dev/net/tun and ip netns"
fi
NDEV=$([ -n "$NET" ] && echo 4 || echo 3)

# devices NAME: the -s options, a disk and a console file of NAME's own
devices() {
	truncate -s 8M "$TMP/$1.disk"
	echo "-s 3,virtio-rnd -s 4,virtio-console,file:$TMP/$1.con -s 5,virtio-blk,$TMP/$1.disk $NET"
}

# check NAME WANT RC NDEV: status 1, the digest, no sanitizer report, no
# warning, and a summary line per device with every attack recovered from
# and no notification served while BAR 0 did not decode
check() {
	local name=$1 want=$2 rc=$3 ndev=$4 got lines bad
	[ -e "$TMP/$name.out" ] || : >"$TMP/$name.out"
	got=$(guest_digest "$TMP/$name.out")
	lines=$(grep -c '^khyve-testguest: hostile [a-z]*: attacks=' "$TMP/$name.out")
	bad=$(grep '^khyve-testguest: hostile [a-z]*: attacks=' "$TMP/$name.out" |
		sed -n 's/.*attacks=\([0-9]*\) recoveries=\([0-9]*\).*served-bar-off=\([0-9]*\).*/\1 \2 \3/p' |
		awk '$1 != $2 || $1 == 0 || $3 != 0')
	if sanitizer_report "$TMP/$name.err"; then
		fail "$name" "sanitizer report: $(head -5 "$TMP/$name.err" | tr '\n' ' ')"
	elif [ -z "$want" ]; then
		fail "$name" "no reference digest (testguest-ref failed)"
	elif [ "$rc" -ne 1 ] || [ "$got" != "$want" ]; then
		fail "$name" "$(status_text "$rc") (want 1), digest '$got' (reference '$want'): $(tail -2 "$TMP/$name.out" | tr '\n' ' ') $(head -c 300 "$TMP/$name.err")"
	elif grep -qiE 'warning|error' "$TMP/$name.err"; then
		fail "$name" "khyve complained: $(grep -iE 'warning|error' "$TMP/$name.err" | head -3 | tr '\n' ' ')"
	elif [ "$lines" -ne "$ndev" ] || [ -n "$bad" ]; then
		fail "$name" "want $ndev device summaries with attacks = recoveries, served-bar-off=0: $(grep '^khyve-testguest: hostile' "$TMP/$name.out" | tr '\n' ' ')"
	else
		pass "$name"
	fi
	grep '^khyve-testguest: hostile [a-z]*:' "$TMP/$name.out" | sed 's/^khyve-testguest: /# /'
}

ctl() {
	bounded 60 $NSX "$CTL" --rundir="$RUN" --timeout="$(tmo 60)" "$@" </dev/null >"$TMP/ctl.out" 2>"$TMP/ctl.err"
}

# start NAME KHYVE-ARGS...: in the background, $pid; returns once the socket is there
start() {
	local name=$1
	shift
	rm -f "$TMP/$name.out"
	$NSX "$KHYVE" --rundir "$RUN" -l "com1,file:$TMP/$name.out" --debug-exit "$@" "$name" \
		</dev/null >/dev/null 2>"$TMP/$name.err" &
	pid=$!
	VMPIDS="$VMPIDS $pid"
	wait_socket "$RUN/$name.sock" $pid 10
}

# every attack kind on every device, one line per attack (hostlog=1); and
# on 2 vCPUs next to smp (core: fewer rounds)
for ncpu in 1 2; do
	name=hostile-${ncpu}cpu
	if [ $ncpu -eq 1 ]; then
		cmd="workload=hostile rounds=10 hostlog=1 seed=$((SEED + 1))"
	else
		cmd="workload=hostile,smp rounds=$(by_set 4 16) seed=$((SEED + 2))"
	fi
	start $name -c $ncpu -m 64M $(devices $name) -k "$GUEST" -A "$cmd"
	# asked as soon as the socket is there, not after the guest's first
	# line: a short core run ended before a busy test machine's shell got
	# that far (2026-12-06)
	if ! running $pid; then
		fail "$name-status-meanwhile" "the VM ended before it could be asked: $(tail -1 "$TMP/$name.out")"
	elif ctl --vm=$name --status && grep -q '"name"' "$TMP/ctl.out"; then
		pass "$name-status-meanwhile"
	else
		fail "$name-status-meanwhile" "khyvectl --status: $(cat "$TMP/ctl.out" "$TMP/ctl.err" | head -c 300)"
	fi
	wait_bounded $pid 300
	rc=$?
	check $name "$(ref_digest $ncpu "$cmd")" $rc $NDEV
done
# the 1-vCPU run went through every kind on every device
missing=
for dev in rng console blk net; do
	[ "$dev" = net ] && [ -z "$NET" ] && continue
	for a in $(bounded 60 "$REF" --hostile-attacks); do
		case $a in
		rng-* | console-* | blk-* | net-*) [ "${a%%-*}" = "$dev" ] || continue ;;
		esac
		grep -q "^hostile $dev $a[ :]" "$TMP/hostile-1cpu.out" || missing="$missing $dev:$a"
	done
done
if [ -z "$(bounded 60 "$REF" --hostile-attacks)" ]; then
	fail hostile-every-attack "testguest-ref --hostile-attacks listed no attack"
else
	[ -z "$missing" ] && pass hostile-every-attack || fail hostile-every-attack "never run:$missing"
fi

# a read-only disk: writes fail, the device survives
name=hostile-ro
truncate -s 8M "$TMP/ro.disk"
cmd="workload=hostile rounds=$(by_set 4 10) seed=$((SEED + 3))"
start $name -m 64M -s 5,virtio-blk,$TMP/ro.disk,ro -k "$GUEST" -A "$cmd"
wait_bounded $pid 300
rc=$?
check $name "$(ref_digest 1 "$cmd")" $rc 1

# is_broken SNAP: a virtio section of SNAP.state has DEVICE_NEEDS_RESET in its status
is_broken() {
	bounded 30 python3 -c '
import re, sys
d = open(sys.argv[1] + ".state", "rb").read()
sys.exit(0 if any(m[0] & 0x40 for m in re.findall(rb"\x66status\x18(.)\x63isr", d, re.S)) else 1)
' "$1"
}

# restore NAME SNAP WANT: SNAP restored in a fresh process ends with WANT
restore() {
	local name=$1 snap=$2 want=$3 rc
	: >"$TMP/$name.out"
	bounded 120 $NSX "$KHYVE" --rundir "$RUN" -r "$snap" -l "com1,file:$TMP/$name.out" "$name" \
		</dev/null >/dev/null 2>"$TMP/$name.err"
	rc=$?
	judge "$name" "$want" $rc
}

# attack_seen FILE N PID: the guest writing FILE has logged (hostlog=1) at
# least N attacks (0); PID is gone (2: stop waiting)
attack_seen() {
	[ "$(grep -c '^hostile [a-z]* [a-z-]* v[0-9]*:' "$1" 2>/dev/null)" -ge "$2" ] && return 0
	running "$3" || return 2
	return 1
}

# checkpoints while the devices are broken: every attack a loop in a chain,
# the broken state held 150 ms (scaled: the time a checkpoint has to land
# in it) before the reset; each checkpoint right after the guest logged a
# random one of its attacks (6 per device)
name=hostile-cp
cmd="workload=hostile rounds=1 hostattack=chain-loop hosthold=$(tmo 150) hostlog=1 seed=$((SEED + 4))"
want=$(ref_digest 1 "$cmd")
start $name -m 64M $(devices $name) -k "$GUEST" -A "$cmd"
bad=
pick_rounds 2 1 $((6 * NDEV))
for i in 1 2; do
	if ! wait_until 60 attack_seen "$TMP/$name.out" "${PICKED[i - 1]}" $pid; then
		bad="$bad $i (the guest did not log attack ${PICKED[i - 1]}: $(tail -1 "$TMP/$name.out"));"
	elif ! snap_now $pid "$RUN/$name.sock" checkpoint "$TMP/$name.$i" disks; then
		bad="$bad $i (after attack ${PICKED[i - 1]}: $SNAP_WHY);"
	fi
done
wait_bounded $pid 300
check $name "$want" $? $NDEV
cp_verdict "$name-checkpoints" 2 "$bad"
broken=0
for i in 1 2; do
	if [ ! -e "$TMP/$name.$i.state" ]; then
		fail "$name-r$i" "checkpoint $i was not written"
		continue
	fi
	is_broken "$TMP/$name.$i" && broken=$((broken + 1))
	restore "$name-r$i" "$TMP/$name.$i" "$want"
done
[ $broken -ge 1 ] && pass "$name-needs-reset-saved" ||
	fail "$name-needs-reset-saved" "no checkpoint caught a device in DEVICE_NEEDS_RESET"

# state only a hostile driver leaves must restore too (virtio-rnd alone):
# a checkpoint right after the guest logged its first such attack, whose
# state it holds 300 ms (scaled)
for attack in status-reserved-bits status-features-unoffered; do
	name=hostile-cp-$attack
	cmd="workload=hostile rounds=1 hostattack=$attack hosthold=$(tmo 300) hostlog=1 seed=$((SEED + 5))"
	want=$(ref_digest 1 "$cmd")
	start $name -m 64M -s 3,virtio-rnd -k "$GUEST" -A "$cmd"
	if ! wait_until 60 attack_seen "$TMP/$name.out" 1 $pid; then
		echo "# checkpoint: the guest logged no attack: $(tail -1 "$TMP/$name.out")"
	elif ! snap_now $pid "$RUN/$name.sock" checkpoint "$TMP/$name.snap"; then
		echo "# checkpoint: $SNAP_WHY"
	fi
	wait_bounded $pid 300
	check $name "$want" $? 1
	if [ -e "$TMP/$name.snap.state" ]; then
		restore "$name-restore" "$TMP/$name.snap" "$want"
	else
		fail "$name-restore" "no snapshot: $SNAP_WHY"
	fi
done
