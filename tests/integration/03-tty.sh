# The host terminal is raw while the guest runs and restored on every exit.
. tests/lib.sh
if command -v python3 >/dev/null; then
	bounded 120 python3 tests/integration/terminal_modes.py "$KHYVE" "$FIX" 2>"$TMP/tty.err"
	rc=$?
	[ $rc -eq 0 ] || fail tty "terminal_modes.py: $(status_text $rc): $(head -c 300 "$TMP/tty.err")"
else
	skip tty "python3 not installed"
fi
