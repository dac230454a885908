#!/bin/bash
# `make install` puts the tools, the mount helper where mount(8) finds it,
# the man pages, the systemd unit, the bash completion and the examples in
# place, as README lists them; the installed binaries run; `make uninstall`
# removes it all.
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
# README's "what goes where" is what a default build installs, no more, no
# less (a path line: a file, or a directory and the files it gets)
if grep -qx 'prefix = /usr/local' "$TOP/Makefile" &&
	pkg-config --exists systemd bash-completion 2>/dev/null; then
	want=$(sed -n '/^goes where:/,/^configure asks/p' "$TOP/README" |
		sed -n 's|^    \(/[^ ]*\) *\(.*\)|\1 \2|p' | while read -r path rest; do
			case $path in
			*/) rest=${rest%%(*}
			    for f in ${rest//,/ }; do echo "$path$f"; done ;;
			*) echo "$path" ;;
			esac
		done | sort)
	[ "$(wc -l <<< "$want")" -ge 8 ] || die "README's install list not read: $want"
	got=$(cd "$T/root" && find . ! -type d | sed 's|^\.||' | sort)
	[ "$want" = "$got" ] || die "README's install list and make install differ:
$(diff <(echo "$want") <(echo "$got"))"
	log "README's install list: $(wc -l <<< "$want") files, as installed"
else
	echo "SKIP: README's install list: not a default build (prefix, systemd, bash-completion)"
fi
# README's apt-get line names every build dependency debian/control does
readme_apt=$(sed -n '/^    apt-get install build-essential/,/check$/p' "$TOP/README" | tr -d '\\')
[ -n "$readme_apt" ] || die "README has no apt-get line for the build dependencies"
for p in $(sed -n '/^Build-Depends:/,/^[A-Z]/p' "$TOP/debian/control" |
	sed 's/^Build-Depends://; s/([^)]*)//g' | tr ',' '\n' | awk 'NF { print $1 }'); do
	case $p in debhelper-compat | [A-Z]*:) continue ;; esac
	grep -qw -- "$p" <<< "$readme_apt" || die "README's apt-get line lacks the build dependency $p"
done
make -s -C "$TOP" uninstall DESTDIR="$T/root" >/dev/null
left=$(find "$T/root" ! -type d)
[ -z "$left" ] || die "make uninstall left $left"
pass
