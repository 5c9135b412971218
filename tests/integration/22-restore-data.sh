# Stored snapshots of every format version restore and finish correctly;
# damaged snapshots are refused with one line naming file, section or field,
# exit status 4, and no vCPU ever runs.
. tests/lib.sh

CTL=$BUILD/khyvectl
RUN=$TMP/run

TAP=khd$$
trap 'ip link del "$TAP" 2>/dev/null; rm -rf "$TMP"' EXIT

# slots_for SNAP NAME: the -s options a sample with PCI functions is restored
# with, one per line (its .run file's `slots`, tests/data/mksample.sh): @TMP@
# is a directory of its own, holding a copy of each of the sample's disks at
# the path its virtio-blk option names (the restored guest writes to it);
# @TAP@ a tap device.  In the array sargs; status 1 where this host cannot
# (a SKIP), 2 where the sample is broken (a FAIL), the reason in $WHY.
slots_for() {
	local snap=$1 dir=$TMP/$2.d a d slot
	WHY= sargs=()
	mkdir -p "$dir"
	for a in $(sed -n 's/^slots=//p' "$snap.run"); do
		[ "$a" = -s ] && continue
		a=${a//@TMP@/$dir}
		case $a in
		*@TAP@*)
			if [ "$(id -u)" -ne 0 ]; then
				WHY="its virtio-net needs a tap device, which needs root"
				return 1
			fi
			ip link show "$TAP" >/dev/null 2>&1 || ip tuntap add dev "$TAP" mode tap ||
				{ WHY="cannot make tap device $TAP"; return 1; }
			a=${a//@TAP@/$TAP}
			;;
		*,virtio-blk,*)
			slot=${a%%,*}
			d=${a#*,virtio-blk,}
			d=${d#path=}
			cp --sparse=always "$snap.virtio-blk.${slot/:/.}.disk" "${d%%,*}" ||
				{ WHY="no disk copy $snap.virtio-blk.${slot/:/.}.disk"; return 2; }
			;;
		esac
		sargs+=(-s "$a")
	done
}

# A sample records the CPU it was taken on; khyve refuses it, by name, on a
# host of another vendor, one lacking a CPU feature the guest was shown, or
# one with a smaller XSAVE area.  Only such a refusal (status 4, that one
# line) is a SKIP: this host cannot run the sample.  Any other outcome that
# is not the reference digest is a FAIL.
for state in tests/data/v*/*.state; do
	snap=${state%.state}
	name=data-$(basename "$(dirname "$snap")")-$(basename "$snap")
	ncpu=$(sed -n 's/^ncpu=//p' "$snap.run")
	cmd=$(sed -n 's/^cmdline=//p' "$snap.run")
	want=$(ref_digest "$ncpu" "$cmd")
	slots_for "$snap" "$name"
	case $? in
	1) skip "$name" "$WHY"; continue ;;
	2) fail "$name" "$WHY"; continue ;;
	esac
	bounded 120 "$KHYVE" --rundir "$RUN" -r "$snap" -l "com1,file:$TMP/$name.out" "${sargs[@]}" "$name" \
		</dev/null >/dev/null 2>"$TMP/$name.err"
	rc=$?
	got=$(guest_digest "$TMP/$name.out" 2>/dev/null)	# no file when refused
	q=$(printf '%s' "$snap" | sed 's/[.[\*^$]/\\&/g')	# the path as a regular expression
	if [ $rc -eq 4 ] && [ "$(wc -l <"$TMP/$name.err")" -eq 1 ] && grep -qE "^khyve: snapshot '$q'( was taken on a [^ ]+ CPU; this host's is [^ ]+| needs CPU features this host lacks: CPUID leaf 0x[0-9a-f]+\.[0-9]+ E[ABCD]X bits 0x[0-9a-f]+| section 'vcpu\.[0-9]+': XSAVE area of [0-9]+ bytes, this host's is [0-9]+)\$" "$TMP/$name.err"; then
		skip "$name" "the sample's CPU is not this host's, khyve refused it: $(cat "$TMP/$name.err")"
	elif sanitizer_report "$TMP/$name.err"; then
		fail "$name" "sanitizer report: $(head -5 "$TMP/$name.err" | tr '\n' ' ')"
	elif [ -z "$want" ]; then
		fail "$name" "no reference digest for '$cmd' (testguest-ref failed)"
	elif [ $rc -eq 1 ] && [ "$got" = "$want" ]; then
		pass "$name"
	else
		fail "$name" "$(status_text $rc) (want 1), digest '$got' (want '$want'): $(head -c 300 "$TMP/$name.err")"
	fi
done

# --- damaged snapshots -------------------------------------------------
SRC=tests/data/v1/guest-2cpu
cp "$SRC" "$TMP/good"
cp "$SRC.state" "$TMP/good.state"

# refuse NAME "message part" [SNAPSHOT]: khyve -r must fail cleanly
refuse() {
	local name=$1 want=$2 snap=${3:-$TMP/bad} rc
	rm -f "$TMP/never.out"
	bounded 30 "$KHYVE" --rundir "$RUN" -r "$snap" -l "com1,file:$TMP/never.out" x \
		</dev/null >/dev/null 2>"$TMP/r.err"
	rc=$?
	if sanitizer_report "$TMP/r.err"; then
		fail "$name" "sanitizer report: $(head -5 "$TMP/r.err" | tr '\n' ' ')"
	elif [ $rc -ne 4 ]; then
		fail "$name" "$(status_text $rc), want 4: $(head -c 300 "$TMP/r.err")"
	elif [ "$(wc -l <"$TMP/r.err")" -ne 1 ]; then
		fail "$name" "want one line, got: $(cat "$TMP/r.err")"
	elif ! grep -qF -- "$want" "$TMP/r.err"; then
		fail "$name" "'$(cat "$TMP/r.err")' lacks '$want'"
	elif [ -e "$TMP/never.out" ]; then
		fail "$name" "devices were created before the snapshot was validated"
	else
		pass "$name"
	fi
}

bad() { cp "$TMP/good" "$TMP/bad"; cp "$TMP/good.state" "$TMP/bad.state"; }

# section frames: name, start and end of each (header 32 bytes, frame 30 + name)
bounded 30 python3 - "$TMP/good.state" >"$TMP/frames" <<'PY'
import struct, sys
d = open(sys.argv[1], "rb").read()
off = 32
while off < len(d):
    n = struct.unpack_from("<H", d, off + 4)[0]
    name = d[off + 6:off + 6 + n].decode()
    ln = struct.unpack_from("<Q", d, off + 14 + n)[0]
    print(name, off, off + 30 + n, off + 30 + n + ln)
    off += 30 + n + ln
PY

# truncation at every section boundary, inside every frame and payload
# (core: at the boundary and in the middle of the payload)
while read -r sec start pstart end; do
	if full_only; then
		cuts="$start $((start + 3)) $((pstart - 1)) $(((pstart + end) / 2)) $((end - 1))"
	else
		cuts="$start $(((pstart + end) / 2))"
	fi
	for cut in $cuts; do
		bad
		truncate -s "$cut" "$TMP/bad.state"
		refuse "truncated-$sec-at-$cut" "snapshot '$TMP/bad.state'"
	done
done <"$TMP/frames"

# one flipped bit in every section's payload: a checksum names the section
flip() {	# flip FILE OFFSET
	bounded 30 python3 -c 'import sys; f=open(sys.argv[1],"r+b"); o=int(sys.argv[2]); f.seek(o); b=f.read(1); f.seek(o); f.write(bytes([b[0]^4]))' "$1" "$2"
}
while read -r sec start pstart end; do
	[ "$end" -gt "$pstart" ] || continue
	bad
	flip "$TMP/bad.state" $(((pstart + end) / 2))
	refuse "bitflip-$sec" "section '$sec'"
done <"$TMP/frames"

bad; flip "$TMP/bad.state" 0; refuse wrong-magic "wrong magic"
bad; printf '\002' | dd of="$TMP/bad.state" bs=1 seek=8 conv=notrunc 2>/dev/null
refuse newer-format "format version 2 is newer than this khyve reads"
bad; flip "$TMP/bad.state" 20; refuse header-uuid-flip "file checksum mismatch"

# the memory file: missing, truncated, its trailer damaged, another snapshot's
bad; rm "$TMP/bad"; refuse memory-missing "cannot open snapshot memory file"
bad; truncate -s 8M "$TMP/bad"; refuse memory-truncated "the state file expects"
bad; flip "$TMP/bad" $(( (16 << 20) + 20 )); refuse memory-trailer-flip "trailer is corrupt"
"$KHYVE" --rundir "$RUN" -c 2 -m 16M -l com1,null -k "$FIX/echo.elf" other </dev/null >/dev/null 2>&1 &
pid=$!
wait_socket "$RUN/other.sock" $pid 10
if bounded 60 "$CTL" --rundir="$RUN" --vm=other --timeout="$(tmo 60)" --checkpoint="$TMP/other" \
	</dev/null >/dev/null 2>"$TMP/other.err"; then
	bad; cp "$TMP/other" "$TMP/bad"
	refuse memory-of-another-snapshot "memory file belongs to another snapshot"
else
	fail memory-of-another-snapshot "could not take the second snapshot: $(cat "$TMP/other.err")"
fi
kill $pid
wait_bounded $pid 20 2>/dev/null

# the state file missing altogether
refuse state-missing "cannot read snapshot state '$TMP/none.state'" "$TMP/none"

exit 0
