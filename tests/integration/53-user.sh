# -u USER (docs/khyve.8): a VM started as root with -u nobody runs every
# thread (main, vCPU, I/O threads, disk workers) as nobody (all four uids
# and gids, no group 0), still confined by seccomp; a checkpoint into a
# directory nobody may write succeeds and one into a root-only directory
# fails with the VM running on; the test guest booted with -u nobody,
# checkpointed into nobody's directory and restored with -u nobody ends
# with the reference digest both times, and the restored VM runs as nobody
# too.  (-u nosuchuser is in 01-bad-input.sh.)
. tests/lib.sh

CTL=$BUILD/khyvectl
RUN=$TMP/run
VMPIDS=
trap 'kill -9 $VMPIDS 2>/dev/null; rm -rf "$TMP"' EXIT

if [ "$(id -u)" != 0 ] || ! id nobody >/dev/null 2>&1; then
	skip user "needs root and a user nobody"
	exit 0
fi
NUID=$(id -u nobody)
NGID=$(id -g nobody)
chmod 0711 "$TMP"	# nobody must reach its directory, and nothing else here
mkdir -p "$TMP/nb" "$TMP/rootonly"
chown nobody "$TMP/nb"
chmod 0700 "$TMP/rootonly"

ctl() {
	bounded 60 "$CTL" --rundir="$RUN" --timeout="$(tmo 60)" "$@" </dev/null >"$TMP/ctl.out" 2>"$TMP/ctl.err"
}

# as_nobody NAME PID [NTHREADS]: the check NAME passes when every thread of
# PID (NTHREADS of them, if given) has nobody's uids and gids, no group 0,
# and Seccomp 2 (kernel workers in the process, PF_USER_WORKER, left out)
as_nobody() {
	local t st flags n=0 bad= want="${3:-}"
	for t in /proc/$2/task/*; do
		flags=$(sed 's/.*) //' "$t/stat" 2>/dev/null | cut -d' ' -f7) || continue
		[ -n "$flags" ] && [ $((flags & 0x4000)) -ne 0 ] && continue
		st=$(cat "$t/status" 2>/dev/null) || continue
		n=$((n + 1))
		if ! grep -qE "^Uid:[[:space:]]+$NUID[[:space:]]+$NUID[[:space:]]+$NUID[[:space:]]+$NUID\$" <<<"$st" ||
			! grep -qE "^Gid:[[:space:]]+$NGID[[:space:]]+$NGID[[:space:]]+$NGID[[:space:]]+$NGID\$" <<<"$st" ||
			grep -qE "^Groups:.*(^|[[:space:]])0([[:space:]]|\$)" <<<"$st" ||
			! grep -qE "^Seccomp:[[:space:]]*2\$" <<<"$st"; then
			bad="$bad ${t##*/}:$(grep -E '^(Name|Uid|Gid|Groups|Seccomp):' <<<"$st" | tr -s '\t\n' '  ')"
		fi
	done
	if [ -n "$want" ] && [ $n -ne "$want" ]; then
		fail "$1" "$n threads, want $want"
	elif [ $n -eq 0 ] || [ -n "$bad" ]; then
		fail "$1" "not nobody's (pid $2):$bad"
	else
		pass "$1"
	fi
}

# (1) an idle VM with virtio-blk on its thread pool, virtio-rnd and virtio-console
truncate -s 8M "$TMP/u.img"
mkdir -p "$RUN"
chmod 0711 "$RUN"	# the run directory is the admin's: nobody may reach a socket in it
KHYVE_BLK_NO_URING=1 "$KHYVE" --rundir "$RUN" -m 16M -l com1,null -u nobody -k "$FIX/echo.elf" \
	-s 3,virtio-blk,$TMP/u.img -s 4,virtio-rnd -s 5,virtio-console,file:$TMP/u.con u \
	</dev/null >/dev/null 2>"$TMP/u.err" &
PID=$!
VMPIDS="$VMPIDS $PID"
if wait_socket "$RUN/u.sock" $PID 10; then
	as_nobody user-threads $PID 9
	if ctl --vm=u --checkpoint="$TMP/nb/u.cp" --disks && [ -s "$TMP/nb/u.cp.state" ] &&
		[ "$(stat -c %u "$TMP/nb/u.cp.state")" = "$NUID" ] && running $PID; then
		pass user-checkpoint
	else
		fail user-checkpoint "$(head -c 300 "$TMP/ctl.err") $(head -c 300 "$TMP/u.err")"
	fi
	if ! ctl --vm=u --checkpoint="$TMP/rootonly/u.cp" && [ ! -e "$TMP/rootonly/u.cp.state" ] &&
		running $PID; then
		pass user-checkpoint-denied
	else
		fail user-checkpoint-denied "a checkpoint where nobody may not write: $(ls "$TMP/rootonly") $(head -c 300 "$TMP/ctl.err")"
	fi
	as_nobody user-threads-after-checkpoint $PID 9
	# the control socket admits USER (the socket is its), and still no one else
	if bounded 60 setpriv --reuid="$NUID" --regid="$NGID" --clear-groups "$CTL" --rundir="$RUN" \
		--timeout="$(tmo 60)" --vm=u --status </dev/null >"$TMP/ctl.out" 2>"$TMP/ctl.err" &&
		grep -q "\"pid\": $PID," "$TMP/ctl.out"; then
		pass user-control-as-user
	else
		fail user-control-as-user "$(ls -l "$RUN") $(head -c 300 "$TMP/ctl.err")"
	fi
	if ! bounded 60 setpriv --reuid=54321 --regid=54321 --clear-groups "$CTL" --rundir="$RUN" \
		--timeout="$(tmo 60)" --vm=u --status </dev/null >"$TMP/ctl.out" 2>"$TMP/ctl.err" &&
		grep -q "permission denied\|Permission denied" "$TMP/ctl.err"; then
		pass user-control-others-refused
	else
		fail user-control-others-refused "uid 54321: $(head -c 300 "$TMP/ctl.out") $(head -c 300 "$TMP/ctl.err")"
	fi
	kill -TERM $PID 2>/dev/null
	wait_bounded $PID 30
	rc=$?
	[ $rc -eq 0 ] && ! sanitizer_report "$TMP/u.err" && pass user-stop ||
		fail user-stop "$(status_text $rc) after SIGTERM (want 0): $(head -c 300 "$TMP/u.err")"
else
	fail user-threads "khyve did not answer --status: $(head -c 300 "$TMP/u.err")"
fi

# (2) the test guest, booted and restored as nobody
if ! have_guest; then
	fail user-guest "test guest not built"
	exit 0
fi
SEED=${KHYVE_TEST_SEED:-$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')}
RANDOM=$SEED
echo "# random moments from seed $SEED (KHYVE_TEST_SEED=$SEED to repeat)"
name=user-guest
cp_guest $name "$TMP/nb/$name.cp" -u nobody
if [ -s "$TMP/nb/$name.cp.state" ]; then
	"$KHYVE" --rundir "$RUN" -u nobody -r "$TMP/nb/$name.cp" -l "com1,file:$TMP/$name-r.out" \
		$name-r </dev/null >/dev/null 2>"$TMP/$name-r.err" &
	pid=$!
	VMPIDS="$VMPIDS $pid"
	if wait_socket "$RUN/$name-r.sock" $pid 10; then
		as_nobody user-threads-restored $pid
	else
		fail user-threads-restored "the restore did not answer --status: $(head -c 300 "$TMP/$name-r.err")"
	fi
	wait_bounded $pid 300
	judge $name-r "$want" $?
else
	fail $name-r "checkpoint was not written"
fi
