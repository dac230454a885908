#!/bin/bash
# mount(8) helper conventions (spec 5.5, issue 5): `mount -t clonefs` and an
# fstab entry reach mount.clonefs with -o dest=,meta=; umount commits; a
# remount takes META's region size, a conflicting region_size= is refused.
. "$(dirname "$0")/lib.sh"

# mount(8) looks for /sbin/mount.TYPE: point it at this build for the test.
use_build_helper

make_source "$T/src" 16
mkdir -p "$T/m"
_mounts+=("$T/m")

# 1. mount -t clonefs with options
mount -t clonefs "$T/src" "$T/m" -o "dest=$T/dest,meta=$T/meta,no_hydration,region_size=128k"
poll 10 test -e "$T/m/image" || die "no image after mount -t"
grep -q " $T/m fuse.clonefs " /proc/mounts || die "not listed as fuse.clonefs"
grep -q "^$T/src $T/m " /proc/mounts || die "source not shown as the mount's device"
[ "$(status_field "$T/m" 3)" = 256 ] || die "region_size=128k not applied"
[ "$(status_field "$T/m" 7)" = no_hydration ] || die "no_hydration not applied"
cmp "$T/src" "$T/m/image" || die "image differs from source"
printf 'written through mount -t' | dd of="$T/m/image" bs=1 seek=5000 conv=notrunc status=none
unmount_clone "$T/m" "$T/meta"

# 2. an fstab entry (mount --fstab), with the noise mount(8) adds, and no
# region_size=: a remount takes META's 128k, not the 64k default (issue 27)
cat > "$T/fstab" <<FSTAB
# test fstab
$T/src $T/m clonefs dest=$T/dest,meta=$T/meta,nofail,noauto,x-systemd.automount,rw 0 0
FSTAB
mount --fstab "$T/fstab" "$T/m" || die "mount via fstab failed"
poll 10 test -e "$T/m/image" || die "no image after fstab mount"
[ "$(status_field "$T/m" 3)" = 256 ] ||
	die "remount without region_size=: $(status_field "$T/m" 3) sectors, not META's 256"
dd if="$T/m/image" bs=1 skip=5000 count=24 status=none | grep -q "written through mount -t" ||
	die "write did not survive umount and fstab remount"
poll 60 hydrated_all "$T/m" || die "hydration did not finish"

# 3. fusermount3 -u also commits and stops the daemon cleanly
fusermount3 -u "$T/m"
timeout 30 flock "$T/meta" true || die "daemon did not exit after fusermount3 -u"
cmp -n 5000 "$T/src" "$T/dest" || die "dest head differs"
cmp -i 5024 "$T/src" "$T/dest" || die "dest tail differs"

# 4. an explicit region_size= that is not META's is refused in one line
# naming it; nothing is mounted
out=$(mount -t clonefs "$T/src" "$T/m" -o "dest=$T/dest,meta=$T/meta,region_size=64k" 2>&1) &&
	die "region_size=64k accepted for META of 128k regions"
log "refused: $out"
echo "$out" | grep -q "region size 65536 does not match metadata (131072)" || die "unclear error: $out"
mountpoint -q "$T/m" && die "mounted anyway with region_size=64k"

# 5. the 2-argument form without dest/meta is refused in one line
out=$(mount -t clonefs "$T/src" "$T/m" 2>&1) && die "mount without dest= accepted"
echo "$out" | grep -q "dest=DEST,meta=META" || die "unclear error: $out"
pass
