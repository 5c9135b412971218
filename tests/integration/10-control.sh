# The control socket and khyvectl (docs/control-protocol.md, docs/khyvectl.8):
# khyvectl's requests, raw-socket abuse of the protocol (the VM must keep
# running and answer the next good request), socket creation rules, several
# VMs side by side, descriptor hygiene.  Long-running VMs are echo.elf with
# COM1 on null: it waits for input forever.
. tests/lib.sh

CTL=$BUILD/khyvectl
CTLABS=$(cd "$(dirname "$CTL")" 2>/dev/null && pwd)/khyvectl
PY=tests/integration/control_client.py
RUN=$TMP/run
NAME=ctl-$$
VMPIDS=
trap 'kill -9 $VMPIDS 2>/dev/null; rm -rf "$TMP"' EXIT

# answers NAME DIR PID: khyve PID answers --status on DIR/NAME.sock (status
# 2 once PID is gone: stop waiting)
answers() {
	running "$3" || return 2
	[ -S "$2/$1.sock" ] &&
		bounded 10 "$CTL" --vm="$1" --rundir="$2" --timeout="$(tmo 5)" --status 2>/dev/null |
		grep -q "\"pid\": $3,"
}

# start_vm NAME RUNDIR: start a VM in the background, $STARTED its pid,
# $START_US the time just before; fails unless it answers --status on its
# socket within 10 s (a stale socket of a killed one answers nothing).
start_vm() {
	local name=$1 dir=$2
	START_US=$(now_us)
	# malloc's mmap threshold pinned low, so that a reply queue's growth
	# (raw-never-reads) is a realloc by mremap every time, not only when
	# glibc's moving threshold happens to be low: seccomp killed khyve
	# there before mremap was allowed
	GLIBC_TUNABLES=glibc.malloc.mmap_threshold=65536 \
		"$KHYVE" -m 16M -l com1,null -k "$FIX/echo.elf" --rundir "$dir" "$name" \
		</dev/null >/dev/null 2>"$TMP/$name.err" &
	STARTED=$!
	VMPIDS="$VMPIDS $STARTED"
	wait_until 10 answers "$name" "$dir" "$STARTED" && running "$STARTED"
}

# stop_vm NAME PID: SIGTERM must stop it with status 0 within 20 s, no
# sanitizer report, and its socket gone.
stop_vm() {
	local name=$1 pid=$2 dir=${3:-$RUN} rc check
	check=stop${name#"$NAME"}	# stable check names: stop, stop-b, ...
	kill -TERM "$pid" 2>/dev/null
	wait_bounded "$pid" 20
	rc=$?
	if sanitizer_report "$TMP/$name.err"; then
		fail "$check" "sanitizer report: $(head -5 "$TMP/$name.err" | tr '\n' ' ')"
	elif [ $rc -ne 0 ]; then
		fail "$check" "$(status_text $rc) after SIGTERM, want 0: $(tail -3 "$TMP/$name.err" | tr '\n' ' ')"
	elif [ -e "$dir/$name.sock" ]; then
		fail "$check" "socket $dir/$name.sock left behind"
	else
		pass "$check"
	fi
}

# ctl ARGS...: khyvectl with a time limit; stdout in $TMP/ctl.out, stderr in
# $TMP/ctl.err, status in $rc.
ctl() {
	bounded 30 "$CTL" "$@" </dev/null >"$TMP/ctl.out" 2>"$TMP/ctl.err"
	rc=$?
}

# fields FILE: the top-level fields of the JSON object in FILE, in the
# array F (F[state], F[pid], ...; lists and objects as JSON), all of them
# from one python run; F is empty if FILE holds no JSON object
declare -A F
fields() {
	local k v
	F=()
	while IFS=$'\t' read -r k v; do
		F[$k]=$v
	done < <(bounded 30 python3 -c '
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except ValueError:
    sys.exit(1)
for k, v in (d.items() if isinstance(d, dict) else ()):
    print("%s\t%s" % (k, json.dumps(v) if isinstance(v, (list, dict)) else v))
' "$1" 2>/dev/null)
}

# alive NAME: after a check, the VM NAME still runs and answers --status
alive() {
	local check=$1 name=${2:-$NAME} pid=${3:-$VM}
	if ! kill -0 "$pid" 2>/dev/null; then
		fail "$check" "khyve $name is gone: $(tail -3 "$TMP/$name.err" | tr '\n' ' ')"
		return 1
	fi
	ctl --vm="$name" --rundir="$RUN" --status
	# (khyvectl's top-level "state" line; grep, not python: this runs often)
	if [ $rc -ne 0 ] || ! grep -qx '  "state": "running",' "$TMP/ctl.out"; then
		fail "$check" "--status afterwards: $(status_text $rc), $(cat "$TMP/ctl.out" "$TMP/ctl.err" | tr '\n' ' ')"
		return 1
	fi
	return 0
}

# raw NAME SCENARIO [ARG]: a control_client.py scenario, then the VM must be
# alive and answer
raw() {
	local name=$1 out
	shift
	bounded 40 python3 "$PY" "$RUN/$NAME.sock" "$@" >"$TMP/raw.out" 2>&1
	rc=$?
	if [ $rc -ne 0 ]; then
		fail "$name" "control_client.py $1: $(status_text $rc): $(head -3 "$TMP/raw.out" | tr '\n' ' ')"
	elif alive "$name"; then
		pass "$name"
	fi
}

# usage NAME ARGS...: khyvectl must exit 2 with a message on stderr
usage() {
	local name=$1
	shift
	ctl "$@"
	if [ $rc -eq 2 ] && grep -q '^khyvectl: ' "$TMP/ctl.err" && [ ! -s "$TMP/ctl.out" ]; then
		pass "$name"
	else
		fail "$name" "$(status_text $rc), want 2; stderr: $(head -c 300 "$TMP/ctl.err")"
	fi
}

if [ ! -x "$CTL" ]; then
	fail khyvectl "not built ($CTL)"
	exit 0
fi

# ---- khyvectl's command line (no VM needed) -------------------------------
usage ctl-no-args
usage ctl-no-vm --pause
usage ctl-no-action --vm=x
usage ctl-two-actions --vm=x --pause --resume
usage ctl-unknown-option --vm=x --frobnicate
usage ctl-missing-arg --vm=x --checkpoint
usage ctl-arg-not-taken --vm=x --pause=now
usage ctl-empty-file --vm=x --checkpoint=
usage ctl-extra-arg --vm=x --status extra
usage ctl-disks-without-save --vm=x --pause --disks
usage ctl-bad-name --vm=a/b --status
usage ctl-json-without-inspect --vm=x --status --json
usage ctl-inspect-with-vm --vm=x --inspect=f
usage ctl-bad-timeout --vm=x --status --timeout=soon

ctl --help
if [ $rc -eq 0 ] && grep -q '^Usage: khyvectl --vm=NAME' "$TMP/ctl.out"; then
	pass ctl-help
else
	fail ctl-help "$(status_text $rc) (want 0 and a usage line): $(head -3 "$TMP/ctl.out")"
fi
# the manual names every option of --help, and the reverse
opts_help=$(grep -o -- '--[a-z][a-z-]*' "$TMP/ctl.out" | sort -u)
opts_man=$(grep -o -- '\\-\\-[a-z][a-z-]*' docs/khyvectl.8 | sed 's/\\//g' | sort -u)
if [ -n "$opts_help" ] && [ "$opts_help" = "$opts_man" ]; then
	pass ctl-man-in-step
else
	fail ctl-man-in-step "--help: $(echo $opts_help), man page: $(echo $opts_man)"
fi
if command -v man >/dev/null && bounded 60 env MANWIDTH=80 man -l docs/khyvectl.8 2>"$TMP/man.err" | grep -q 'checkpoint' &&
   ! grep -q . "$TMP/man.err"; then
	pass ctl-man-renders
else
	fail ctl-man-renders "man -l docs/khyvectl.8: $(head -3 "$TMP/man.err")"
fi

ctl --vm=nosuch --rundir="$TMP/nowhere" --status
if [ $rc -eq 1 ] && [ "$(cat "$TMP/ctl.err")" = "khyvectl: no VM named nosuch (no socket at $TMP/nowhere/nosuch.sock)" ]; then
	pass ctl-no-such-vm
else
	fail ctl-no-such-vm "$(status_text $rc) (want 1 and 'no VM named nosuch'): $(cat "$TMP/ctl.err")"
fi

ctl --inspect="$TMP/no-such-snapshot"
if [ $rc -eq 1 ] && grep -q '^khyvectl: ' "$TMP/ctl.err"; then
	pass ctl-inspect-missing
else
	fail ctl-inspect-missing "$(status_text $rc) (want 1 and a message): $(cat "$TMP/ctl.err")"
fi

# a server that never answers: khyvectl gives up with a clear message (its
# own --timeout=1 is what is tested: not scaled)
mkdir -m 700 "$TMP/silent"
python3 "$PY" "$TMP/silent/mute.sock" silent-server "$(tmo 4)" &
spid=$!
wait_until 5 ready "$TMP/silent/mute.sock.ready" $spid
ctl --vm=mute --rundir="$TMP/silent" --timeout=1 --status
if [ $rc -eq 1 ] && grep -q '^khyvectl: no answer from VM mute within 1 s$' "$TMP/ctl.err"; then
	pass ctl-timeout
else
	fail ctl-timeout "$(status_text $rc) (want 1 and 'no answer from VM mute within 1 s'): $(cat "$TMP/ctl.err")"
fi
kill $spid 2>/dev/null
wait_bounded $spid 10 2>/dev/null

# ---- the socket ------------------------------------------------------------
if ! start_vm "$NAME" "$RUN"; then
	fail start "khyve did not create $RUN/$NAME.sock: $(cat "$TMP/$NAME.err")"
	exit 0
fi
VM=$STARTED
if [ "$(stat -c %a "$RUN")" = 700 ] && [ "$(stat -c %a "$RUN/$NAME.sock")" = 600 ]; then
	pass socket-modes
else
	fail socket-modes "rundir $(stat -c %a "$RUN"), socket $(stat -c %a "$RUN/$NAME.sock")"
fi

VM_START_US=$START_US
t1=$(now_us)
ctl --vm="$NAME" --rundir="$RUN" --status
t2=$(now_us)
fields "$TMP/ctl.out"
devs=${F[devices]}
up1=${F[uptime_ms]}
if [ $rc -eq 0 ] && [ "${F[name]}" = "$NAME" ] &&
   [ "${F[state]}" = running ] &&
   [ "${F[vcpus]}" = 1 ] &&
   [ "${F[memory]}" = $((16 << 20)) ] &&
   [ "${F[pid]}" = "$VM" ] &&
   echo "$devs" | grep -q '"uart.com1"'; then
	pass status-fields
else
	fail status-fields "$(status_text $rc): $(cat "$TMP/ctl.out" "$TMP/ctl.err" | tr '\n' ' ')"
fi
# uptime_ms: khyve's age in ms.  A second --status 200 ms later: it grew by
# at least the time between the two calls and at most the time from the
# start of the first to the end of the second, and it is below the time
# since khyve was started (1 ms of rounding either way)
sleep 0.2
t3=$(now_us)
ctl --vm="$NAME" --rundir="$RUN" --status
t4=$(now_us)
fields "$TMP/ctl.out"
up2=${F[uptime_ms]}
min=$(((t3 - t2) / 1000 - 1)) max=$(((t4 - t1) / 1000 + 1)) age=$(((t4 - VM_START_US) / 1000 + 1))
case "$up1$up2" in
'' | *[!0-9]*)
	fail status-uptime "uptime_ms not a number: '$up1', then '$up2'" ;;
*)
	if [ $((up2 - up1)) -lt $min ] || [ $((up2 - up1)) -gt $max ]; then
		fail status-uptime "uptime_ms went from $up1 to $up2 (+$((up2 - up1))) across calls $min-$max ms apart"
	elif [ "$up2" -gt "$age" ]; then
		fail status-uptime "uptime_ms $up2, but khyve was started only $age ms before"
	else
		pass status-uptime
	fi
	;;
esac
# separate-argument forms work as well as --opt=value
ctl --vm "$NAME" --rundir "$RUN" --status
[ $rc -eq 0 ] && pass ctl-separate-args || fail ctl-separate-args "$(status_text $rc), want 0: $(cat "$TMP/ctl.err")"

# ---- pause and resume, in and out of order -------------------------------
ok=1 why=
step() {	# step WANT_RC WANT_STDERR ARGS...
	local want=$1 msg=$2
	shift 2
	ctl --vm="$NAME" --rundir="$RUN" "$@"
	if [ $rc -ne "$want" ] || { [ -n "$msg" ] && [ "$(cat "$TMP/ctl.err")" != "$msg" ]; } ||
	   { [ -z "$msg" ] && [ -s "$TMP/ctl.err" ]; }; then
		ok=0
		why="$why [$* -> $rc: $(cat "$TMP/ctl.err")]"
	fi
}
step 0 "" --pause
step 0 "" --status
fields "$TMP/ctl.out"
[ "${F[state]}" = paused ] || { ok=0; why="$why [state ${F[state]} after --pause]"; }
step 1 "khyvectl: already paused" --pause
step 0 "" --resume
step 0 "" --status
fields "$TMP/ctl.out"
[ "${F[state]}" = running ] || { ok=0; why="$why [state ${F[state]} after --resume]"; }
step 1 "khyvectl: not paused" --resume
[ $ok -eq 1 ] && alive pause-resume && pass pause-resume
[ $ok -eq 1 ] || fail pause-resume "$why"

# ---- saves: whatever the outcome, the VM keeps running --------------------
mkdir -p "$TMP/snaps"
cd "$TMP/snaps" || exit 1
bounded 120 "$CTL" --vm="$NAME" --rundir="$RUN" --checkpoint=snap </dev/null >"$TMP/save.out" 2>"$TMP/ctl.err"
rc=$?
cd "$OLDPWD" || exit 1
saved=$rc
if [ $rc -ne 0 ] && { [ $rc -ne 1 ] || [ "$(wc -l <"$TMP/ctl.err")" -ne 1 ] ||
			! grep -q '^khyvectl: ' "$TMP/ctl.err"; }; then
	fail checkpoint-vm-runs "$(status_text $rc): $(cat "$TMP/ctl.err")"
elif alive checkpoint-vm-runs; then
	pass checkpoint-vm-runs
fi
# and here it must have worked
if [ $saved -eq 0 ]; then
	# the relative name was resolved in khyvectl's directory, not khyve's;
	# silent on a pipe
	if [ -f "$TMP/snaps/snap" ] && [ -f "$TMP/snaps/snap.state" ] && [ ! -e snap ] &&
	   [ ! -s "$TMP/save.out" ]; then
		pass checkpoint-relative-path
	else
		fail checkpoint-relative-path "$(ls "$TMP/snaps"), stdout: $(head -c 200 "$TMP/save.out")"
	fi
	# on a terminal: progress on one line, then a summary
	if command -v script >/dev/null; then
		cd "$TMP/snaps" || exit 1
		bounded 60 script -qec "'$CTLABS' --vm='$NAME' --rundir='$RUN' --checkpoint=snap-tty" /dev/null \
			</dev/null >"$TMP/tty.out" 2>&1
		rc=$?
		cd "$OLDPWD" || exit 1
		if [ $rc -eq 0 ] && grep -q 'saving: .* of .* (100%), .* MB/s' "$TMP/tty.out" &&
		   grep -q 'saved snap-tty: .* of RAM' "$TMP/tty.out"; then
			pass checkpoint-tty-progress
		else
			fail checkpoint-tty-progress "$(status_text $rc) (want 0, progress and a summary): $(tr '\r\033' '|^' <"$TMP/tty.out" | head -c 400)"
		fi
	else
		skip checkpoint-tty-progress "no script(1)"
	fi
else
	fail checkpoint-relative-path "the checkpoint failed: $(status_text $saved): $(cat "$TMP/ctl.err")"
fi
for act in checkpoint suspend; do
	ctl --vm="$NAME" --rundir="$RUN" --$act="$TMP/no/such/dir/snap"
	if [ $rc -ne 1 ] || ! grep -q '^khyvectl: ' "$TMP/ctl.err"; then
		fail $act-bad-dir "$(status_text $rc), want 1 and a message: $(cat "$TMP/ctl.err")"
	elif alive $act-bad-dir; then
		pass $act-bad-dir
	fi
done

# ---- the protocol, by hand -----------------------------------------------
raw raw-bad-json bad-json
raw raw-not-object not-object
raw raw-bad-requests bad-requests
raw raw-id-echo id-echo
raw raw-long-line long-line
raw raw-eof-partial eof-partial
export TMPDIR_FD=$TMP	# the directory the scenarios pass as a descriptor
raw raw-fds fds
raw raw-stalled-client stall
raw raw-20-clients many
raw raw-never-reads flood

# a khyve that does not answer (stopped): khyvectl gives up, the VM goes on
kill -STOP "$VM"
ctl --vm="$NAME" --rundir="$RUN" --timeout=1 --status
kill -CONT "$VM"
if [ $rc -eq 1 ] && [ "$(cat "$TMP/ctl.err")" = "khyvectl: no answer from VM $NAME within 1 s" ]; then
	alive hung-vm-timeout && pass hung-vm-timeout
else
	fail hung-vm-timeout "$(status_text $rc) (want 1 and 'no answer from VM $NAME within 1 s'): $(cat "$TMP/ctl.err")"
fi

# ---- descriptors: khyve's count stays flat ---------------------------------
nfds() { ls "/proc/$VM/fd" 2>/dev/null | wc -l; }
flat() { after=$(nfds); [ "$after" -eq "$before" ]; }
sleep "$(tmo 0.2)"	# khyve done with the connections before
before=$(nfds)
nloop=$(by_set 20 50) nsave=$(by_set 4 10)	# requests (core: fewer)
bounded 60 python3 "$PY" "$RUN/$NAME.sock" fd-loop $nloop >"$TMP/fdloop.out" 2>&1 ||
	fail fd-leak "control_client.py fd-loop: $(status_text $?): $(head -3 "$TMP/fdloop.out" | tr '\n' ' ')"
cd "$TMP/snaps" || exit 1
for i in $(seq $nsave); do
	bounded 30 "$CTL" --vm="$NAME" --rundir="$RUN" --checkpoint="no/such/$i" </dev/null >/dev/null 2>&1
done
cd "$OLDPWD" || exit 1
wait_until 2 flat
if [ "$before" -gt 0 ] && [ "$after" -eq "$before" ]; then
	alive fd-leak && pass fd-leak
else
	fail fd-leak "khyve had $before descriptors before $((nloop + nsave)) requests with descriptors, $after after: $(ls -l /proc/$VM/fd | tail -5 | tr '\n' ' ')"
fi

# ---- a client of another uid is refused -----------------------------------
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null && [ -x /usr/bin/python3 ]; then
	# widen the permissions so that only the peer check stands in the way
	cp "$PY" "$CTL" "$TMP/" && chmod 755 "$TMP/khyvectl" && chmod 644 "$TMP/control_client.py"
	chmod 711 "$TMP" "$RUN"
	chmod 666 "$RUN/$NAME.sock"
	nobody="setpriv --reuid=65534 --regid=65534 --clear-groups"
	bounded 30 $nobody /usr/bin/python3 "$TMP/control_client.py" "$RUN/$NAME.sock" refused >"$TMP/refused.out" 2>&1
	rc=$?
	if [ $rc -ne 0 ]; then
		fail peer-uid-refused "control_client.py refused: $(status_text $rc): $(head -3 "$TMP/refused.out" | tr '\n' ' ')"
	elif alive peer-uid-refused; then
		pass peer-uid-refused
	fi
	bounded 30 $nobody "$TMP/khyvectl" --vm="$NAME" --rundir="$RUN" --pause \
		</dev/null >/dev/null 2>"$TMP/nobody.err"
	rc=$?
	if [ $rc -eq 1 ] && grep -q '^khyvectl: permission denied: uid 65534 is neither the VM owner' "$TMP/nobody.err"; then
		alive peer-uid-khyvectl && pass peer-uid-khyvectl
	else
		fail peer-uid-khyvectl "$(status_text $rc) (want 1 and 'permission denied'): $(cat "$TMP/nobody.err")"
	fi
	chmod 700 "$TMP" "$RUN"
	chmod 600 "$RUN/$NAME.sock"
else
	skip peer-uid-refused "needs root and setpriv"
fi

# ---- names: one socket per VM ----------------------------------------------
expect_error same-name-refused "a VM named $NAME is already running ($RUN/$NAME.sock)" \
	-m 16M -l com1,null -k "$FIX/echo.elf" --rundir "$RUN" "$NAME"
[ -S "$RUN/$NAME.sock" ] && alive same-name-first-intact && pass same-name-first-intact

if start_vm "$NAME-b" "$RUN"; then
	VMB=$STARTED
	ctl --vm="$NAME-b" --rundir="$RUN" --pause
	ctl --vm="$NAME-b" --rundir="$RUN" --status
	fields "$TMP/ctl.out"
	b_state=${F[state]} b_name=${F[name]} b_pid=${F[pid]}
	ctl --vm="$NAME" --rundir="$RUN" --status
	fields "$TMP/ctl.out"
	a_state=${F[state]} a_pid=${F[pid]}
	if [ "$b_state/$b_name/$b_pid" = "paused/$NAME-b/$VMB" ] && [ "$a_state/$a_pid" = "running/$VM" ]; then
		pass side-by-side
	else
		fail side-by-side "b: $b_state/$b_name/$b_pid (pid $VMB), a: $a_state/$a_pid (pid $VM)"
	fi
	stop_vm "$NAME-b" "$VMB"	# paused VMs stop too
else
	fail side-by-side "second VM did not start: $(cat "$TMP/$NAME-b.err")"
fi

# a killed khyve leaves its socket; the next one with that name replaces it
if start_vm "$NAME-s" "$RUN"; then
	kill -9 "$STARTED"
	wait_bounded "$STARTED" 10 2>/dev/null
	if [ -S "$RUN/$NAME-s.sock" ] && start_vm "$NAME-s" "$RUN"; then
		VMS=$STARTED
		ctl --vm="$NAME-s" --rundir="$RUN" --status
		fields "$TMP/ctl.out"
		if [ $rc -eq 0 ] && [ "${F[pid]}" = "$VMS" ]; then
			pass stale-socket-replaced
		else
			fail stale-socket-replaced "$(status_text $rc): $(cat "$TMP/ctl.out" "$TMP/ctl.err")"
		fi
		stop_vm "$NAME-s" "$VMS"
	else
		fail stale-socket-replaced "restart failed: $(cat "$TMP/$NAME-s.err")"
	fi
else
	fail stale-socket-replaced "first VM did not start: $(cat "$TMP/$NAME-s.err")"
fi

# Two khyves of one name, the second started while the first is between
# creating its control socket and listening on it (widened by an
# LD_PRELOAD shim that delays listen()), over a stale socket: the second
# must refuse, the first run and own the socket.  A socket bound but not
# listening looks stale, so khyve listens under a private name and links
# the public one only then, and takes the run directory's lock meanwhile.
race_bad=
slow_ms=$(( $(tmo 2) * 1000 ))
preload="LD_PRELOAD=$FIX/slow_listen.so SLOW_LISTEN_MS=$slow_ms ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"
for i in $(by_set "1" "1 2 3"); do
	n=$NAME-r$i
	if start_vm "$n" "$RUN"; then
		kill -9 "$STARTED"
		wait_bounded "$STARTED" 10 2>/dev/null
	fi
	rm -f "$TMP/listening"
	env $preload SLOW_LISTEN_FLAG="$TMP/listening" "$KHYVE" -m 16M -l com1,null -k "$FIX/echo.elf" \
		--rundir "$RUN" "$n" </dev/null >/dev/null 2>"$TMP/$n.e1" &
	p1=$!
	# the first is in listen(): bound, not yet listening
	wait_until 10 eval "[ -e '$TMP/listening' ] || ! running $p1" ||
		race_bad="round $i: the first never reached listen()"
	"$KHYVE" -m 16M -l com1,null -k "$FIX/echo.elf" --rundir "$RUN" "$n" </dev/null >/dev/null 2>"$TMP/$n.e2" &
	p2=$!
	VMPIDS="$VMPIDS $p1 $p2"
	wait_until 20 answers "$n" "$RUN" "$p1" || wait_until 10 answers "$n" "$RUN" "$p2"
	wait_until 10 eval "! running $p2"	# a refused second ends at once
	live=
	for p in $p1 $p2; do running "$p" && live="$live $p"; done
	ctl --vm="$n" --rundir="$RUN" --status
	fields "$TMP/ctl.out"
	if [ -n "$race_bad" ]; then
		:
	elif [ "$(echo $live)" != "$p1" ] || [ "${F[pid]}" != "$p1" ]; then
		race_bad="round $i: first $p1, second $p2; running:$live; the socket answers for pid ${F[pid]:-none}; $(cat "$TMP/$n.e1" "$TMP/$n.e2" | tr '\n' ' ')"
	elif ! grep -q "a VM named $n is already running" "$TMP/$n.e2"; then
		race_bad="round $i: the second said: $(cat "$TMP/$n.e2" | tr '\n' ' ')"
	fi
	kill -TERM $live 2>/dev/null
	for p in $p1 $p2; do wait_bounded "$p" 20 2>/dev/null; done
	[ -n "$race_bad" ] && break
done
if [ -n "$race_bad" ]; then
	fail same-name-race "$race_bad"
elif ls -A "$RUN" | grep -q "^\.$NAME"; then
	fail same-name-race "private socket names left in $RUN: $(ls -A "$RUN" | tr '\n' ' ')"
else
	pass same-name-race
fi

# ---- where the socket may not be created ---------------------------------
ln -s "$RUN" "$TMP/link"
expect_error rundir-symlink "run directory $TMP/link is a symbolic link" \
	-l com1,null -k "$FIX/echo.elf" --rundir "$TMP/link" vm1
: >"$TMP/plain"
expect_error rundir-not-dir "run directory $TMP/plain is not a directory" \
	-l com1,null -k "$FIX/echo.elf" --rundir "$TMP/plain" vm1
mkdir -m 777 "$TMP/open"
chmod 777 "$TMP/open"
expect_error rundir-world-writable "run directory $TMP/open is writable by others (mode 0777)" \
	-l com1,null -k "$FIX/echo.elf" --rundir "$TMP/open" vm1
: >"$RUN/plainfile.sock"
expect_error socket-path-not-socket "$RUN/plainfile.sock exists and is not a socket" \
	-l com1,null -k "$FIX/echo.elf" --rundir "$RUN" plainfile
long=$TMP/$(printf 'd%.0s' $(seq 100))
expect_error socket-path-too-long "is too long" -l com1,null -k "$FIX/echo.elf" --rundir "$long" vm1
# missing directories are made, 0700
mkdir -p "$TMP/deep"
if start_vm "$NAME-d" "$TMP/deep/a/b"; then
	m=$(stat -c %a "$TMP/deep/a" "$TMP/deep/a/b" | tr '\n' ' ')
	[ "$m" = "700 700 " ] && pass rundir-parents-0700 || fail rundir-parents-0700 "modes $m"
	stop_vm "$NAME-d" "$STARTED" "$TMP/deep/a/b"
else
	fail rundir-parents-0700 "$(cat "$TMP/$NAME-d.err")"
fi

# suspend: the reply, then khyve exits 5 within 10 s and removes its socket
ctl --vm="$NAME" --rundir="$RUN" --suspend="$TMP/snaps/final"
crc=$rc
[ $crc -eq 0 ] || kill -TERM "$VM" 2>/dev/null	# the suspend failed: stop it
wait_bounded "$VM" 10
vrc=$?
if [ $crc -eq 0 ] && [ $vrc -eq 5 ] && [ -f "$TMP/snaps/final.state" ] &&
   [ ! -e "$RUN/$NAME.sock" ] && ! sanitizer_report "$TMP/$NAME.err"; then
	pass suspend-exits-5
else
	fail suspend-exits-5 "khyvectl: $(LIMIT=$(tmo 30) status_text $crc) ($(cat "$TMP/ctl.err")), khyve: $(status_text $vrc) (want 0 and 5), state file: $(ls "$TMP/snaps/final.state" 2>&1), socket: $(ls "$RUN")"
fi
