#!/bin/sh
# Install every Debian package khyve's build, tests, demo and benchmarks need.
# Idempotent: installs nothing when everything is present.  Run as root (or
# through sudo); `make` calls it only when a check in the Makefile fails.
set -eu

PKGS="gcc make binutils libc6-dev pkg-config
libcbor-dev libjansson-dev libxxhash-dev liburing-dev libseccomp-dev libcmocka-dev
qemu-system-x86 busybox-static util-linux iproute2 procps man-db python3"

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done

if [ -z "$missing" ]; then
	exit 0
fi

echo "install-deps: installing:$missing" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y -q --no-install-recommends $missing >/dev/null; then
	$SUDO apt-get update -q >/dev/null
	$SUDO apt-get install -y -q --no-install-recommends $missing >/dev/null
fi
