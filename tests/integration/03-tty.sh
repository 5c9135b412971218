# The host terminal is raw while the guest runs and restored on every exit.
. tests/lib.sh
if command -v python3 >/dev/null; then
	timeout 120 python3 tests/integration/terminal_modes.py "$KHYVE" "$FIX"
else
	skip tty "python3 not installed"
fi
