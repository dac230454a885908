#!/bin/bash
# `make install` puts the tools, the mount helper where mount(8) finds it,
# and the man pages in place; the installed binaries run.
. "$(dirname "$0")/lib.sh"

make -s -C "$TOP" install DESTDIR="$T/root" >/dev/null
for f in /usr/local/sbin/clonefs /usr/local/sbin/mount.clonefs /sbin/mount.clonefs \
	/usr/local/share/man/man8/clonefs.8 /usr/local/share/man/man8/mount.clonefs.8; do
	[ -e "$T/root$f" ] || [ -L "$T/root$f" ] || die "make install did not install $f"
done
[ -s "$T/root/usr/local/share/man/man8/clonefs.8" ] || die "empty man page"
"$T/root/usr/local/sbin/mount.clonefs" --version | grep -q "mount.clonefs" || die "installed helper does not run"
"$T/root/usr/local/sbin/clonefs" --version | grep -q "clonefs" || die "installed tool does not run"
[ "$(readlink "$T/root/sbin/mount.clonefs")" = /usr/local/sbin/mount.clonefs ] ||
	die "/sbin/mount.clonefs does not point at the installed helper"
pass
