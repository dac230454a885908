#!/bin/bash
# `make install` puts the tools, the mount helper where mount(8) finds it,
# the man pages, the systemd unit, the bash completion and the examples in
# place; the installed binaries run; `make uninstall` removes it all.
. "$(dirname "$0")/lib.sh"

make -s -C "$TOP" install DESTDIR="$T/root" >/dev/null
for f in /usr/local/sbin/clonefs /usr/local/sbin/mount.clonefs /sbin/mount.clonefs \
	/usr/local/share/man/man8/clonefs.8 /usr/local/share/man/man8/mount.clonefs.8 \
	/usr/local/share/doc/clonefs/examples/mnt-vm.mount; do
	[ -e "$T/root$f" ] || [ -L "$T/root$f" ] || die "make install did not install $f"
done
[ -s "$T/root/usr/local/share/man/man8/clonefs.8" ] || die "empty man page"
"$T/root/usr/local/sbin/mount.clonefs" --version | grep -q "mount.clonefs" || die "installed helper does not run"
"$T/root/usr/local/sbin/clonefs" --version | grep -q "clonefs" || die "installed tool does not run"
[ "$(readlink "$T/root/sbin/mount.clonefs")" = /usr/local/sbin/mount.clonefs ] ||
	die "/sbin/mount.clonefs does not point at the installed helper"
# the unit and the completion go where configure found systemd's and
# bash-completion's directories
unit=$(find "$T/root" -path '*/systemd/system/clonefs-wait@.service')
[ -n "$unit" ] || die "make install did not install clonefs-wait@.service"
for c in clonefs mount.clonefs; do
	[ -n "$(find "$T/root" -path "*/bash-completion/completions/$c")" ] ||
		die "make install did not install the completion for $c"
done
grep -qx 'ExecStart=/usr/local/sbin/clonefs wait --interval 60 %f' "$unit" ||
	die "clonefs-wait@.service does not run the installed clonefs: $(grep ExecStart "$unit")"
make -s -C "$TOP" uninstall DESTDIR="$T/root" >/dev/null
left=$(find "$T/root" ! -type d)
[ -z "$left" ] || die "make uninstall left $left"
pass
