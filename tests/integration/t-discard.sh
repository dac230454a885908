#!/bin/bash
# Discards (spec 2.6, 6.4): blkdiscard on a loop device over the image (whole
# device, aligned and region-cutting sub-ranges, BLKZEROOUT) and fallocate
# --punch-hole / --zero-range on the image itself read back zeros in exactly
# the range and the source elsewhere. Whole unhydrated regions are marked
# hydrated without a copy and stay holes in DEST; partial ones are hydrated
# and zeroed only where covered. -o no_discard_passdown allocates instead.
. "$(dirname "$0")/lib.sh"

K=1024
M=$((1024 * 1024))
RS=$((64 * K))
# 16 MiB + 20 KiB: 256 full 64 KiB regions and a short last one.
make_source "$T/src" 16
head -c $((20 * K)) /dev/urandom >> "$T/src"
SIZE=$(stat -c %s "$T/src")
NR=$(((SIZE + RS - 1) / RS))

cat > "$T/chk.py" <<'PY'
# chk.py hole|data|same FILE [FILE2] OFF LEN
import errno, os, sys
cmd, path = sys.argv[1], sys.argv[2]
off, length = int(sys.argv[-2]), int(sys.argv[-1])
end = off + length
fd = os.open(path, os.O_RDONLY)

def seek(o, whence):
    try:
        return os.lseek(fd, o, whence)
    except OSError as e:
        if e.errno != errno.ENXIO:
            raise
        return None

if cmd == "hole":    # DEST holds no data in the range
    d = seek(off, os.SEEK_DATA)
    ok = d is None or d >= end
elif cmd == "data":  # DEST holds data all over the range
    ok = seek(off, os.SEEK_DATA) == off and seek(off, os.SEEK_HOLE) >= end
else:                # the two files have the same bytes in the range
    with open(sys.argv[3], "rb") as f:
        f.seek(off)
        ok = os.pread(fd, length, off) == f.read(length)
sys.exit(0 if ok else 1)
PY
chk() { python3 "$T/chk.py" "$@"; }

# fresh OPTS: a new clone of SOURCE, the model back to SOURCE
fresh() {
	if mountpoint -q "$T/m"; then unmount_clone "$T/m" "$T/meta"; fi
	rm -f "$T/dest" "$T/meta"
	cp "$T/src" "$T/model"
	mount_clone "$T/src" "$T/dest" "$T/meta" "$T/m" "$1"
	hydrated=0 copied=0
}

# zeroed OFF LEN NEW-REGIONS COPIED-REGIONS: the model after a discard of
# [OFF, OFF+LEN); checks the image, the hydrated count and the bytes copied.
zeroed() {
	fallocate -p -o "$1" -l "$2" "$T/model"
	hydrated=$((hydrated + $3))
	copied=$((copied + $4))
	cmp "$T/m/image" "$T/model" || die "image differs after discarding $1+$2"
	[ "$(hydrated_count "$T/m")" = "$hydrated" ] ||
		die "after discarding $1+$2: $(hydrated_count "$T/m") regions hydrated, want $hydrated"
	[ "$(json_field "$T/m" bytes_copied)" = "$copied" ] ||
		die "after discarding $1+$2: $(json_field "$T/m" bytes_copied) bytes copied, want $copied"
}

log "discard passdown: holes in DEST"
fresh no_hydration
new_loop "$T/m/image"
dev=$LOOP
[ "$(blockdev --getsize64 "$dev")" = "$SIZE" ] || die "loop device size"
# whole regions 16..47: marked hydrated, no copy, holes in DEST
blocks=$(stat -c %b "$T/dest")
blkdiscard -o $((1 * M)) -l $((2 * M)) "$dev"
zeroed $((1 * M)) $((2 * M)) 32 0
chk hole "$T/dest" $((1 * M)) $((2 * M)) || die "dest is not a hole under a whole-region discard"
[ "$(stat -c %b "$T/dest")" -le $((blocks + 8)) ] || die "a discard allocated space in dest"
cmp "$dev" "$T/model" || die "loop device differs from the model"
# regions 80 (from +4k), 81, 82 (whole), 83 (up to +12k): the cut ones are
# copied, and only what the discard covers becomes zeros (spec 6.4)
blkdiscard -o $((80 * RS + 4 * K)) -l $((2 * RS + 72 * K)) "$dev"
zeroed $((80 * RS + 4 * K)) $((2 * RS + 72 * K)) 4 $((2 * RS))
chk hole "$T/dest" $((81 * RS)) $((2 * RS)) || die "dest is not a hole in regions 81-82"
chk data "$T/dest" $((80 * RS)) $((4 * K)) || die "dest lacks the head of region 80"
chk same "$T/dest" "$T/src" $((80 * RS)) $((4 * K)) || die "head of region 80 not copied"
chk same "$T/dest" "$T/src" $((83 * RS + 12 * K)) $((52 * K)) || die "tail of region 83 not copied"
# BLKZEROOUT (loop: ZERO_RANGE), sector aligned, across regions 144-145
blkdiscard -z -o $((144 * RS + 512)) -l $((RS)) "$dev"
zeroed $((144 * RS + 512)) $RS 2 $((2 * RS))
# the whole tail through the device: region 255 in part, the short 256 whole
blkdiscard -o $((SIZE - 80000 - 384)) -l $((80000 + 384)) "$dev"
zeroed $((SIZE - 80384)) 80384 2 $((RS + 20 * K))
cmp "$dev" "$T/model" || die "loop device differs from the model"
free_loop "$dev"

# fallocate on the image itself: byte ranges, file semantics
fallocate --punch-hole -o $((112 * RS + 1000)) -l 70000 "$T/m/image"
zeroed $((112 * RS + 1000)) 70000 2 $((2 * RS))
fallocate --zero-range -o $((176 * RS + 100)) -l 300000 "$T/m/image"
zeroed $((176 * RS + 100)) 300000 5 $((2 * RS))
fallocate --zero-range --keep-size -o $((3 * M - 10)) -l 20 "$T/m/image"
zeroed $((3 * M - 10)) 20 1 $RS   # region 48 cut; region 47 is hydrated
[ "$(stat -c %s "$T/m/image")" = "$SIZE" ] || die "fallocate changed the size"
# in a region written before: only the covered 4 KiB of the new data go
head -c $RS /dev/urandom > "$T/chunk"
dd if="$T/chunk" of="$T/m/image" bs=$RS seek=208 conv=notrunc status=none
dd if="$T/chunk" of="$T/model" bs=$RS seek=208 conv=notrunc status=none
fallocate --punch-hole -o $((208 * RS + 8 * K)) -l $((4 * K)) "$T/m/image"
zeroed $((208 * RS + 8 * K)) $((4 * K)) 1 0
# remount: all of it persisted; hydrate the rest: DEST is the model
unmount_clone "$T/m" "$T/meta"
mount_clone "$T/src" "$T/dest" "$T/meta" "$T/m"
cmp "$T/m/image" "$T/model" || die "image differs from the model after remount"
poll 60 hydrated_all "$T/m" || die "hydration did not finish"
unmount_clone "$T/m" "$T/meta"
cmp "$T/dest" "$T/model" || die "dest differs from the model"
# (region 47 lost 10 bytes to the zero-range above: a data block in DEST now)
chk hole "$T/dest" $((1 * M)) $((2 * M - RS)) || die "hydration filled the discarded regions"

log "whole device, passdown"
fresh no_hydration
new_loop "$T/m/image"
dev=$LOOP
# the first half unhydrated (region 128 cut), the rest hydrated: then all
blkdiscard -l $((SIZE / 2)) "$dev"
zeroed 0 $((SIZE / 2)) 129 $RS
message "$T/m" enable_hydration
poll 60 hydrated_all "$T/m" || die "hydration did not finish"
chk data "$T/dest" $((SIZE / 2)) $((SIZE - SIZE / 2)) || die "dest lacks the hydrated half"
hydrated=$NR copied=$(json_field "$T/m" bytes_copied)
blkdiscard "$dev"
zeroed 0 "$SIZE" 0 0
free_loop "$dev"
cmp -n "$SIZE" "$T/m/image" /dev/zero || die "image does not read zeros"
unmount_clone "$T/m" "$T/meta"
chk hole "$T/dest" 0 "$SIZE" || die "dest holds data after a whole-device discard"
[ "$(stat -c %b "$T/dest")" -le 128 ] || die "dest allocates $(stat -c %b "$T/dest") sectors"

log "no_discard_passdown: DEST stays allocated"
fresh no_hydration,no_discard_passdown
[ "$(status_field "$T/m" 6)" = 2 ] && [ "$(status_field "$T/m" 8)" = no_discard_passdown ] ||
	die "status features: $(status_field "$T/m" 0)"
new_loop "$T/m/image"
dev=$LOOP
blocks=$(stat -c %b "$T/dest")
blkdiscard -o $((1 * M)) -l $((2 * M)) "$dev"
zeroed $((1 * M)) $((2 * M)) 32 0
[ $(($(stat -c %b "$T/dest") - blocks)) -ge $((2 * M / 512)) ] ||
	die "no_discard_passdown: dest did not allocate the discarded range"
blkdiscard -o $((80 * RS + 4 * K)) -l $((2 * RS + 72 * K)) "$dev"
zeroed $((80 * RS + 4 * K)) $((2 * RS + 72 * K)) 4 $((2 * RS))
chk data "$T/dest" $((80 * RS)) $((4 * K)) || die "dest lacks the head of region 80"
chk same "$T/dest" "$T/model" $((80 * RS)) $((4 * RS)) || die "dest differs in regions 80-83"
blkdiscard "$dev"
zeroed 0 "$SIZE" $((NR - 36)) $((20 * K))
free_loop "$dev"
unmount_clone "$T/m" "$T/meta"
[ $(($(stat -c %b "$T/dest") * 512)) -ge "$SIZE" ] ||
	die "no_discard_passdown: dest allocates $(($(stat -c %b "$T/dest") * 512)) < $SIZE bytes"
cmp -n "$SIZE" "$T/dest" /dev/zero || die "dest does not hold zeros"
pass
