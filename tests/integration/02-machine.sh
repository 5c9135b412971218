# Exit statuses, the multiboot hand-over, the console backends, unclaimed I/O.
. tests/lib.sh

# status NAME WANT KHYVE-ARGS...
status() {
	local name=$1 want=$2 rc
	shift 2
	bounded 60 "$KHYVE" "$@" </dev/null >"$TMP/$name.out" 2>"$TMP/$name.err"
	rc=$?
	if sanitizer_report "$TMP/$name.err"; then
		fail "$name" "sanitizer report: $(head -5 "$TMP/$name.err" | tr '\n' ' ')"
	elif [ $rc -ne "$want" ]; then
		fail "$name" "$(status_text $rc), want $want ($(head -c 300 "$TMP/$name.err"))"
	else
		pass "$name"
	fi
}

status debug-exit-0 1 --debug-exit -k "$FIX/ok.elf" vm
status debug-exit-stdout 1 --debug-exit -k "$FIX/ok.elf" vm
grep -qx 'hi' "$TMP/debug-exit-stdout.out" && pass console-stdio || fail console-stdio "stdout: $(cat "$TMP/debug-exit-stdout.out")"
status halted 2 -k "$FIX/halt.elf" vm
status halted-smp 2 -c 4 -k "$FIX/halt.elf" vm
status triple-fault 3 -k "$FIX/triple.elf" vm
status i8042-reset 1 -k "$FIX/reset.elf" vm
status unclaimed-io 1 --debug-exit -k "$FIX/unclaimed.elf" vm
status debug-exit-port 2 --debug-exit=0x501 -k "$FIX/ok.elf" vm	# 0xf4 unclaimed: guest halts

status console-file 1 --debug-exit -l "com1,file:$TMP/con" -k "$FIX/ok.elf" vm
if [ "$(cat "$TMP/con")" = "hi" ] && [ ! -s "$TMP/console-file.out" ]; then
	pass console-file-content
else
	fail console-file-content "file: '$(cat "$TMP/con")', stdout: '$(cat "$TMP/console-file.out")'"
fi
status console-null 1 --debug-exit -l com1,null -k "$FIX/ok.elf" vm
[ ! -s "$TMP/console-null.out" ] && pass console-null-silent || fail console-null-silent "stdout not empty"

# multiboot information: command line and modules, in order
printf 'first' >"$TMP/m1"
printf 'second' >"$TMP/m2"
status mbinfo 1 --debug-exit -k "$FIX/mbinfo.elf" -A "alpha=1 beta" \
	-i "$TMP/m1 x=1" -i "$TMP/m2" vm
expected="cmdline=$FIX/mbinfo.elf alpha=1 beta
module=$TMP/m1 x=1:first
module=$TMP/m2:second"
if [ "$(cat "$TMP/mbinfo.out")" = "$expected" ]; then
	pass mbinfo-content
else
	fail mbinfo-content "got: $(cat "$TMP/mbinfo.out")"
fi

# serial input from a pipe reaches the guest's receive FIFO, more than 16 bytes
name=serial-input
line="the quick brown fox jumps over the lazy dog 0123456789"
bounded 30 "$KHYVE" --debug-exit -k "$FIX/echo.elf" vm < <(printf '%s\n' "$line") >"$TMP/echo.out" 2>"$TMP/echo.err"
rc=$?
if [ $rc -eq 1 ] && [ "$(cat "$TMP/echo.out")" = "$line" ]; then
	pass $name
else
	fail $name "$(status_text $rc) (want 1), echoed '$(cat "$TMP/echo.out")', want '$line'"
fi

# SIGTERM stops a running VM cleanly
name=sigterm
"$KHYVE" -k "$FIX/echo.elf" vm </dev/zero >/dev/null 2>"$TMP/term.err" &
pid=$!
sleep "$(tmo 0.5)"	# the guest reading /dev/zero
kill -TERM $pid
wait_bounded $pid 30
rc=$?
if [ $rc -eq 0 ] && grep -q "received signal 15" "$TMP/term.err" && ! sanitizer_report "$TMP/term.err"; then
	pass $name
else
	fail $name "$(status_text $rc) after SIGTERM (want 0 and 'received signal 15'): $(cat "$TMP/term.err")"
fi
