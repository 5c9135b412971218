#!/bin/bash
# Take a stored snapshot sample (tests/data/README.md): the test guest of a
# khyve build, suspended with its disks in round 3, plus the .run file that
# tests/integration/22-restore-data.sh restores it with.
#
#   tests/data/mksample.sh BUILD OUT NCPU CMDLINE [-s SLOT,DEVICE,OPTIONS]...
#
# BUILD is a khyve build directory (khyve, khyvectl, guest/testguest): a
# sample is taken by the release whose section versions it keeps, so BUILD
# may be an old commit's (git worktree add ../old COMMIT; make -C ../old).
# Run it where that khyve runs the test guest, as root when a virtio-net
# device is asked for: in the test machine, `scripts/testvm tests/data/
# mksample.sh ...`, so that the sample's CPU is QEMU's `-cpu max`, the same
# wherever the suite runs there.  In the -s options @TMP@ names a scratch
# directory and @TAP@ a tap device made for the run; the same options, with
# the sample's disk copies in @TMP@, restore it (the .run file's `slots`).
set -u
[ $# -ge 4 ] || { sed -n 3,16p "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
BUILD=$(realpath "$1") OUT=$2 NCPU=$3 CMD=$4
shift 4
TMP=$(mktemp -d /tmp/mksample.XXXXXX) || exit 1
TAP=khs$$
NAME=sample$$
cleanup() {
	[ -n "${PID:-}" ] && kill -9 "$PID" 2>/dev/null
	ip link del "$TAP" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT

slots=()
for a in "$@"; do
	case $a in
	*@TAP@*) ip tuntap add dev "$TAP" mode tap || exit 1 ;;
	esac
	slots+=("${a//@TMP@/$TMP}")
done
slots=("${slots[@]//@TAP@/$TAP}")
for a in "${slots[@]}"; do	# disks the options name are made, empty, 16 MiB
	case $a in
	*,virtio-blk,*)
		d=${a#*,virtio-blk,}
		d=${d#path=}
		truncate -s 16M "${d%%,*}"
		;;
	esac
done

"$BUILD/khyve" --rundir "$TMP" -c "$NCPU" -m 16M -l "com1,file:$TMP/com1" "${slots[@]}" \
	-k "$BUILD/guest/testguest" -A "$CMD" --debug-exit "$NAME" </dev/null >/dev/null 2>"$TMP/err" &
PID=$!
for _ in $(seq 3000); do
	grep -q '^round 3' "$TMP/com1" 2>/dev/null && break
	kill -0 $PID 2>/dev/null || { echo "mksample: khyve ended: $(cat "$TMP/err")" >&2; exit 1; }
	sleep 0.02
done
disks=
case "${slots[*]}" in *virtio-blk*) disks=--disks ;; esac
"$BUILD/khyvectl" --rundir="$TMP" --vm="$NAME" --suspend="$OUT" $disks ||
	{ echo "mksample: khyve said: $(cat "$TMP/err"); COM1: $(tail -3 "$TMP/com1")" >&2; ls "$TMP" >&2; exit 1; }
wait $PID
rc=$?
PID=
[ $rc -eq 5 ] || { echo "mksample: khyve ended with $rc after the suspend, not 5: $(cat "$TMP/err")" >&2; exit 1; }
{
	echo "ncpu=$NCPU"
	echo "cmdline=$CMD"
	[ $# -gt 0 ] && echo "slots=$*"
	echo "taken=$(git -C "$BUILD/.." describe --always 2>/dev/null || echo unknown) $(date -u +%F)"
} >"$OUT.run"
ls -l "$OUT"*
