#!/bin/bash
# What README's Install section promises a plain user (issue 27): where
# /dev/fuse is 0666 and fusermount3 is setuid root (the Debian default), a
# user with read access to SOURCE and write access to DEST, META and
# MOUNTPOINT mounts a clone with `mount.clonefs SOURCE DEST META MOUNTPOINT`,
# reads and writes the image, runs clonefs status and wait, and unmounts
# with `fusermount3 -u`; `mount -t clonefs` stays root's. The user is nobody.
# Where /dev/fuse is 0600 (containers, this machine's CI), the user runs in
# a mount namespace of its own with a 0666 node for the device bound over
# /dev/fuse: the machine's /dev/fuse is never changed.
. "$(dirname "$0")/lib.sh"

FM=$(command -v fusermount3) || die "no fusermount3 (package fuse3)"
[ -u "$FM" ] && [ "$(stat -c %u "$FM")" = 0 ] || die "$FM is not setuid root"
for b in "$MOUNT_CLONEFS" "$CLONEFS"; do
	setpriv --reuid=65534 --regid=65534 --clear-groups test -x "$b" ||
		{ echo "SKIP: nobody cannot run $b (its directory is not open to others)"; pass; exit 0; }
done

# the user's files: SOURCE is root's, only readable; the rest nobody's
U=$T/u
mkdir -p "$U/m"
chmod 0711 "$T"
make_source "$U/src" 4
chmod 0644 "$U/src"
chown 65534:65534 "$U" "$U/m"

cat > "$T/user.sh" <<'SH'
set -euo pipefail
say() { echo "# user: $*"; }
fail() { echo "FAIL: as $(id -un): $*" >&2; exit 1; }
until_ok() { # SECONDS COMMAND...
	local end=$((SECONDS + $1)); shift
	until "$@"; do [ $SECONDS -lt $end ] || return 1; sleep 0.1; done
}
[ "$(id -u)" != 0 ] || fail "running as root"
say "/dev/fuse: $(stat -c %A /dev/fuse)"
"$MOUNT_CLONEFS" "$U/src" "$U/dest" "$U/meta" "$U/m" -o region_size=4k,no_hydration ||
	fail "mount.clonefs failed"
until_ok 10 test -e "$U/m/image" || fail "no image after mount.clonefs"
grep -q " $U/m fuse.clonefs " /proc/self/mounts || fail "not a fuse.clonefs mount"
cmp "$U/src" "$U/m/image" || fail "the image differs from SOURCE"
printf 'user' | dd of="$U/m/image" bs=1 seek=100 conv=notrunc,fsync status=none ||
	fail "cannot write the image"
"$CLONEFS" status "$U/m" > /dev/null || fail "clonefs status failed"
"$CLONEFS" message "$U/m" enable_hydration || fail "clonefs message failed"
timeout 60 "$CLONEFS" wait "$U/m" > /dev/null || fail "clonefs wait failed"
fusermount3 -u "$U/m" || fail "fusermount3 -u failed"
timeout 30 flock "$U/meta" true || fail "the daemon did not exit after fusermount3 -u"
out=$(mount -t clonefs "$U/src" "$U/m" -o "dest=$U/dest,meta=$U/meta" 2>&1) &&
	fail "mount -t clonefs worked for a plain user"
say "mount -t clonefs refused: $out"
say done
SH

# run user.sh as nobody: here if /dev/fuse is 0666 already, else in a
# mount namespace with a 0666 /dev/fuse of its own
as_nobody="setpriv --reuid=65534 --regid=65534 --clear-groups --reset-env"
vars="MOUNT_CLONEFS=$MOUNT_CLONEFS CLONEFS=$CLONEFS U=$U PATH=$PATH"
if [ "$(stat -c %a /dev/fuse)" = 666 ]; then
	run=($as_nobody env $vars bash "$T/user.sh")
else
	mknod -m 0666 "$T/fuse" c "$((0x$(stat -c %t /dev/fuse)))" "$((0x$(stat -c %T /dev/fuse)))" ||
		{ echo "SKIP: /dev/fuse is $(stat -c %a /dev/fuse) and no node can be made"; pass; exit 0; }
	run=(unshare -m --propagation private bash -c \
		"mount --bind '$T/fuse' /dev/fuse && exec $as_nobody env $vars bash '$T/user.sh'")
fi
# a daemon left by a failure lives on in the namespace: end it
kill_left() {
	local p
	for p in /proc/[0-9]*; do
		{ tr '\0' ' ' < "$p/cmdline"; } 2>/dev/null | grep -qF " $U/m " &&
			kill -9 "${p#/proc/}" 2>/dev/null
	done
	return 0
}
atexit kill_left
"${run[@]}" || die "the plain user's run failed"
[ "$(stat -c %u "$U/dest")" = 65534 ] || die "DEST is not the user's"
[ "$(dd if="$U/dest" bs=1 skip=100 count=4 status=none)" = user ] || die "the user's write is not in DEST"
cmp -n 100 "$U/src" "$U/dest" || die "DEST head differs from SOURCE"
cmp -i 104 "$U/src" "$U/dest" || die "DEST tail differs from SOURCE"
pass
