# Every bad input gets one line naming the problem and exit status 4.
. tests/lib.sh

printf 'this is not a kernel\n' >"$TMP/notmb"
head -c $((5 << 20)) /dev/zero >"$TMP/bigmod"

expect_error missing-kernel-file "cannot read kernel '/nonexistent/k': No such file or directory" \
	-k /nonexistent/k vm1
expect_error kernel-is-directory "cannot read kernel '/tmp': Is a directory" -k /tmp vm1
expect_error not-multiboot "not a multiboot kernel" -k "$TMP/notmb" vm1
expect_error kernel-too-big "does not fit in guest memory" -m 8M -k "$FIX/bigbss.elf" vm1
expect_error module-too-big "module '$TMP/bigmod' does not fit in guest memory" \
	-m 4M -k "$FIX/ok.elf" -i "$TMP/bigmod" vm1
expect_error missing-module "cannot read module '/nonexistent/m'" -k "$FIX/ok.elf" -i /nonexistent/m vm1
expect_error bad-size "invalid memory size '12Q'" -m 12Q -k "$FIX/ok.elf" vm1
expect_error bad-size-text "invalid memory size 'lots'" -m lots -k "$FIX/ok.elf" vm1
expect_error size-too-small "too small" -m 1M -k "$FIX/ok.elf" vm1
expect_error zero-cpus "invalid vCPU count '0'" -c 0 -k "$FIX/ok.elf" vm1
expect_error too-many-cpus "KVM allows at most" -c 4000 -k "$FIX/ok.elf" vm1
expect_error missing-vmname "missing VMNAME" -k "$FIX/ok.elf"
expect_error unknown-user "-u nosuchuser: no such user" -u nosuchuser -k "$FIX/ok.elf" vm1
expect_error empty-user "-u needs a USER" -u '' -k "$FIX/ok.elf" vm1
expect_error missing-kernel-opt "missing -k KERNEL" vm1
expect_error bad-vmname "invalid VMNAME" -k "$FIX/ok.elf" "a/b"
expect_error unknown-option "unknown option '--frobnicate'" --frobnicate -k "$FIX/ok.elf" vm1
expect_error bad-com1 "invalid COM1 backend 'tty9'" -l com1,tty9 -k "$FIX/ok.elf" vm1
expect_error bad-lpc "invalid -l 'com3,stdio'" -l com3,stdio -k "$FIX/ok.elf" vm1
expect_error bad-debug-exit "invalid --debug-exit port" --debug-exit=0x1ffff -k "$FIX/ok.elf" vm1
expect_error com1-file-unwritable "cannot open COM1 output file" -l com1,file:/nonexistent/x -k "$FIX/ok.elf" vm1

if [ "$(id -u)" -eq 0 ] && command -v unshare >/dev/null; then
	# /dev without kvm, in a private mount namespace
	name=no-dev-kvm
	bounded 30 unshare -m --propagation private sh -c \
		'mount -t tmpfs none /dev && exec "$0" -k "$1" vm1' "$KHYVE" "$FIX/ok.elf" \
		</dev/null >"$TMP/out" 2>"$TMP/err"
	rc=$?
	if [ $rc -eq 4 ] && grep -q "cannot open /dev/kvm: No such file or directory" "$TMP/err" &&
	   [ "$(wc -l <"$TMP/err")" -eq 1 ]; then
		pass $name
	else
		fail $name "$(status_text $rc) (want 4 and one line 'cannot open /dev/kvm: No such file or directory'), stderr: $(cat "$TMP/err")"
	fi
else
	skip no-dev-kvm "needs root and unshare"
fi

if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null; then
	name=no-kvm-permission
	bounded 30 setpriv --reuid=65534 --regid=65534 --clear-groups "$KHYVE" -k "$FIX/ok.elf" vm1 \
		</dev/null >"$TMP/out" 2>"$TMP/err"
	rc=$?
	if [ $rc -eq 4 ] && grep -q "cannot open /dev/kvm: Permission denied" "$TMP/err"; then
		pass $name
	else
		fail $name "$(status_text $rc) (want 4 and 'cannot open /dev/kvm: Permission denied'), stderr: $(cat "$TMP/err")"
	fi
else
	skip no-kvm-permission "needs root and setpriv"
fi

# --help goes to stdout and succeeds
bounded 30 "$KHYVE" --help </dev/null >"$TMP/help" 2>"$TMP/help.err"
rc=$?
if [ $rc -eq 0 ] && grep -q "Usage: khyve" "$TMP/help"; then
	pass help
else
	fail help "$(status_text $rc) (want 0 and 'Usage: khyve' on stdout): $(head -c 300 "$TMP/help.err")"
fi

# the man page documents every option --help lists
bounded 60 man -l docs/khyve.8 2>/dev/null | col -b >"$TMP/man"
missing=
for opt in $(grep -oE -- '--[a-z][a-z-]+' "$TMP/help" | sort -u); do
	grep -q -- "$opt" "$TMP/man" || missing="$missing $opt"
done
if [ ! -s "$TMP/man" ] || [ ! -s "$TMP/help" ]; then
	fail man-page-in-step "no text from man -l docs/khyve.8 or khyve --help"
else
	[ -z "$missing" ] && pass man-page-in-step || fail man-page-in-step "docs/khyve.8 lacks:$missing"
fi
