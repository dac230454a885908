#!/bin/bash
# timeout: 600
# The Debian package (issue 27): dpkg-buildpackage builds it from a copy of
# the checkout (the checkout is never written to), lintian finds no errors,
# and once it is installed `mount -t clonefs` runs the packaged helper, and
# the packaged tool, unit and completion work. The package is purged at the
# end and a /sbin/mount.clonefs that was there before (make install's) is
# put back, so the machine is left as it was.
. "$(dirname "$0")/lib.sh"

git -C "$TOP" rev-parse --git-dir >/dev/null 2>&1 || die "$TOP is not a git checkout"
for t in dpkg-buildpackage dh lintian; do
	command -v $t >/dev/null || die "no $t: scripts/deps installs it"
done

# 1. build from the tracked and new files of the checkout, as they are
src=$T/build/clonefs
mkdir -p "$src"
before=$(git -C "$TOP" status --porcelain)
(cd "$TOP" && git ls-files -z --cached --others --exclude-standard |
	tar --null --ignore-failed-read -T - -cf - 2>/dev/null) | tar -xf - -C "$src"
log "dpkg-buildpackage -b (unit tests skipped: scripts/check runs them)"
(cd "$src" && DEB_BUILD_OPTIONS="nocheck parallel=$(nproc)" \
	dpkg-buildpackage -b -us -uc) > "$T/build.log" 2>&1 ||
	{ tail -n 30 "$T/build.log"; die "dpkg-buildpackage failed"; }
deb=$(echo "$T"/build/clonefs_*.deb)
[ -f "$deb" ] || die "no clonefs_*.deb after the build"
[ "$(git -C "$TOP" status --porcelain)" = "$before" ] || die "the build changed the checkout"

# 2. what it holds and needs
contents=$(dpkg-deb -c "$deb" | awk '{ print $6 }')
for f in ./sbin/mount.clonefs ./sbin/clonefs ./usr/share/man/man8/clonefs.8.gz \
	./usr/share/man/man8/mount.clonefs.8.gz ./lib/systemd/system/clonefs-wait@.service \
	./usr/share/bash-completion/completions/clonefs \
	./usr/share/bash-completion/completions/mount.clonefs \
	./usr/share/doc/clonefs/README.gz ./usr/share/doc/clonefs/copyright \
	./usr/share/doc/clonefs/examples/mnt-vm.mount; do
	grep -qxF "$f" <<< "$contents" || die "the package lacks $f"
done
depends=$(dpkg-deb -f "$deb" Depends)
log "Depends: $depends"
# libnbd0 by hand: source_nbd.c loads it with dlopen, so shlibs cannot see it
for d in fuse3 libfuse3-3 libglib2.0-0 libjson-glib-1.0-0 libssl3 libnbd0; do
	grep -qE "(^|, )$d( |,|$)" <<< "$depends" || die "Depends lacks $d"
done

# 3. lintian: errors fail, the rest is shown
rc=0
lintian --fail-on error "$deb" > "$T/lintian.log" 2>&1 || rc=$?
grep -v 'root privileges' "$T/lintian.log" || true
[ $rc = 0 ] || die "lintian found errors"

# 4. install it, unless a clonefs package is there already (ours to keep)
if dpkg-query -W -f='${Status}' clonefs 2>/dev/null | grep -q "ok installed"; then
	echo "SKIP: the install part: a clonefs package is installed on this machine"
	pass
	exit 0
fi
# dpkg ARGS..., waiting up to 2 minutes while apt or dpkg holds its lock
dpkg_do() {
	local i out
	for ((i = 0; i < 60; i++)); do
		out=$(dpkg "$@" 2>&1) && return 0
		grep -q 'lock' <<< "$out" || break
		sleep 2
	done
	echo "$out"
	return 1
}
helper=/sbin/mount.clonefs
if [ -e $helper ] || [ -L $helper ]; then
	mv $helper "$T/helper.before"
fi
undo_install() {
	dpkg_do --purge clonefs > /dev/null
	if [ -e "$T/helper.before" ] || [ -L "$T/helper.before" ]; then
		mv "$T/helper.before" $helper
	fi
}
atexit undo_install
dpkg_do -i "$deb" || die "dpkg -i failed"
[ "$(dpkg-query -S $helper 2>/dev/null)" = "clonefs: $helper" ] ||
	die "$helper is not the package's"
/sbin/clonefs --version | grep -q "^clonefs" || die "the packaged clonefs does not run"

# 5. mount -t clonefs runs the packaged helper; a byte of SOURCE reads back
make_source "$T/src" 4
mkdir -p "$T/m"
_mounts+=("$T/m")
mount -t clonefs "$T/src" "$T/m" -o "dest=$T/dest,meta=$T/meta,region_size=4k"
poll 10 test -e "$T/m/image" || die "no image after mount -t clonefs"
daemon=
for p in /proc/[0-9]*; do
	{ tr '\0' ' ' < "$p/cmdline"; } 2>/dev/null | grep -qF " $T/m " || continue
	daemon=$(readlink "$p/exe")
done
log "daemon: $daemon"
case $daemon in
	/sbin/mount.clonefs | /usr/sbin/mount.clonefs) ;;
	*) die "the daemon is not the packaged helper: '$daemon'" ;;
esac
off=$((3 * 1024 * 1024 + 12345))
[ "$(od -An -tx1 -j $off -N1 "$T/src")" = "$(od -An -tx1 -j $off -N1 "$T/m/image")" ] ||
	die "byte $off of the image differs from SOURCE"
timeout 60 /sbin/clonefs wait "$T/m" > /dev/null || die "packaged clonefs wait failed"
unmount_clone "$T/m" "$T/meta"
cmp "$T/src" "$T/dest" || die "DEST is not a full copy"

# 6. the packaged unit parses (its ExecStart now exists), the packaged
# completion loads through bash-completion's loader
if command -v systemd-analyze > /dev/null; then
	systemd-analyze verify --man=no clonefs-wait@mnt-vm.service ||
		die "the packaged clonefs-wait@.service does not verify"
else
	echo "SKIP: systemd-analyze verify: no systemd-analyze here"
fi
[ -f /usr/share/bash-completion/bash_completion ] || die "bash-completion is not installed"
out=$(bash -c '. /usr/share/bash-completion/bash_completion
	__load_completion clonefs && __load_completion mount.clonefs &&
	complete -p clonefs mount.clonefs') || die "packaged completion does not load"
grep -q "_mount_clonefs mount.clonefs" <<< "$out" || die "no completion for mount.clonefs: $out"

# 7. purge leaves nothing behind
undo_install
_atexit=()
[ ! -e /sbin/clonefs ] || die "/sbin/clonefs still there after purge"
pass
