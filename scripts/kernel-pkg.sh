# Shell functions shared by scripts/testvm-image and scripts/linux-image:
# the Debian kernel package linux-image-amd64 points to, unpacked (apt-get
# download + dpkg -x: nothing is installed into /boot), and its modules in
# load order.  Sourced, with WORK (a scratch directory) and say/die set.

# Sets pkg, kver, moddir; unpacks into $WORK/pkg.
kpkg_fetch() {
	pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -1)
	if [ -z "$pkg" ] && [ "$(id -u)" -eq 0 ]; then
		apt-get update -q >/dev/null 2>&1 || true
		pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
			sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -1)
	fi
	[ -n "$pkg" ] || die "apt-cache knows no linux-image-amd64 (run apt-get update as root)"
	say "kernel package $pkg"
	(cd "$WORK" && apt-get download "$pkg" >/dev/null 2>"$WORK/apt.err") ||
		die "apt-get download $pkg failed: $(tail -1 "$WORK/apt.err")"
	dpkg -x "$WORK"/"$pkg"_*.deb "$WORK/pkg"
	rm -f "$WORK"/"$pkg"_*.deb
	kver=$(ls "$WORK/pkg/lib/modules" | head -1)
	[ -n "$kver" ] && [ -f "$WORK/pkg/boot/vmlinuz-$kver" ] || die "no kernel in $pkg"
	moddir=$WORK/pkg/lib/modules/$kver
	# name -> file for every module (names use '_' where files may use '-')
	find "$moddir" -name '*.ko' | while read -r f; do
		n=$(basename "$f" .ko | tr - _)
		echo "$n $f"
	done >"$WORK/modmap"
	: >"$WORK/order"
}

kmod_file() { awk -v n="$1" '$1 == n { print $2; exit }' "$WORK/modmap"; }

kmod_deps() {
	objcopy -O binary --only-section=.modinfo "$1" "$WORK/modinfo" &&
		tr '\0' '\n' <"$WORK/modinfo" | sed -n 's/^depends=//p' | tr , ' '
}

# Append module $1 to $WORK/order, after what it depends on (depth-first).
kmod_add() {
	grep -qx "$1" "$WORK/order" && return 0
	_f=$(kmod_file "$1")
	if [ -z "$_f" ]; then
		# built into this kernel: nothing to load
		grep -q "/$1.ko\$\|/$(echo "$1" | tr _ -).ko\$" "$moddir/modules.builtin" 2>/dev/null &&
			return 0
		die "module $1 is neither in $pkg nor built in"
	fi
	for _d in $(kmod_deps "$_f"); do
		kmod_add "$_d"
	done
	echo "$1" >>"$WORK/order"
}

# Copy the ordered modules into $1/lib/modules and their order into $1/modules.order.
kmod_install() {
	mkdir -p "$1/lib/modules"
	while read -r _m; do
		cp "$(kmod_file "$_m")" "$1/lib/modules/$_m.ko"
	done <"$WORK/order"
	cp "$WORK/order" "$1/modules.order"
}
