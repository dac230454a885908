#!/bin/bash
# ext4 on a loop device over the image (spec 2.6, 2.7), buffered and with
# --direct-io=on: mkfs.ext4 and e2fsck -fn are clean, files written through
# the loop survive unmounting everything and remounting, fstrim's discards
# leave DEST holding little more than the files, and the fully hydrated DEST
# is itself the same clean filesystem.
. "$(dirname "$0")/lib.sh"

MIB=$((1024 * 1024))
# Random junk below the filesystem: whatever mkfs does not overwrite and the
# hydration copies is garbage to ext4, so only correct I/O passes e2fsck.
make_source "$T/src" 128
mkdir -p "$T/files"
for i in $(seq 1 12); do
	head -c $((i * 300000 + i)) /dev/urandom > "$T/files/f$i"
done
mkdir -p "$T/files/dir/sub"
head -c 3000000 /dev/urandom > "$T/files/dir/sub/deep"
(cd "$T/files" && find . -type f -print0 | sort -z | xargs -0 sha256sum) > "$T/sums"

fsck_clean() { # fsck_clean DEV-OR-FILE WHEN
	local out
	out=$(e2fsck -fn "$1" 2>&1) || die "e2fsck -fn $2: $out"
	log "e2fsck $2: $(printf '%s\n' "$out" | tail -n 1)"
}

fs_used() { # fs_used DEV: bytes in use by the ext4 on DEV, metadata included
	dumpe2fs -h "$1" 2>/dev/null | awk -F: '
		/^Block count/ { n = $2 } /^Free blocks/ { f = $2 }
		/^Block size/ { b = $2 } END { print (n - f) * b }'
}

# run_pass LOSETUP-OPTS DIO CLONE-OPTS MKFS-OPTS
run_pass() {
	local lopts=$1 dio=$2 copts=$3 mopts=$4 dev out used alloc

	log "pass: losetup $lopts, clone -o $copts, mkfs.ext4 $mopts"
	rm -f "$T/dest" "$T/meta"
	mount_clone "$T/src" "$T/dest" "$T/meta" "$T/m" "$copts"
	new_loop "$T/m/image" $lopts
	dev=$LOOP
	[ "$(losetup -n -O DIO "$dev" | tr -d ' ')" = "$dio" ] ||
		die "$dev: direct I/O is $(losetup -n -O DIO "$dev"), want $dio"
	mkfs.ext4 -q -F $mopts "$dev" || die "mkfs.ext4 failed"
	fsck_clean "$dev" "after mkfs"

	mount_fs "$dev" "$T/fs"
	cp -a "$T/files/." "$T/fs/"
	head -c $((32 * MIB)) /dev/urandom > "$T/fs/big"
	sync -f "$T/fs"
	rm "$T/fs/big"
	sync -f "$T/fs"
	log "before fstrim: $(status_field "$T/m" 4) regions hydrated"
	case $copts in *hydration_rate*)
		hydrated_all "$T/m" && die "hydration finished before fstrim: no overlap";;
	esac
	out=$(fstrim -v "$T/fs") || die "fstrim failed"
	log "$out; $(status_field "$T/m" 4) regions hydrated"
	umount_fs "$T/fs"
	used=$(fs_used "$dev")
	free_loop "$dev"
	poll 10 loop_released "$T/m/image" || die "loop device still holds the image"
	unmount_clone "$T/m" "$T/meta"

	# remount the clone, loop and mount again: the files are intact
	mount_clone "$T/src" "$T/dest" "$T/meta" "$T/m"
	new_loop "$T/m/image" $lopts
	dev=$LOOP
	fsck_clean "$dev" "after remount"
	mount_fs "$dev" "$T/fs"
	(cd "$T/fs" && sha256sum --quiet -c "$T/sums") || die "files differ after remount"
	umount_fs "$T/fs"
	fsck_clean "$dev" "after reading the files"
	free_loop "$dev"
	poll 10 loop_released "$T/m/image" || die "loop device still holds the image"
	poll 60 hydrated_all "$T/m" || die "hydration did not finish"
	unmount_clone "$T/m" "$T/meta"

	# DEST alone is the filesystem now; the trim punched the free space out
	# of it (without fstrim it would hold the deleted 32 MiB, or all 128).
	fsck_clean "$T/dest" "of dest"
	alloc=$(($(stat -c %b "$T/dest") * 512))
	log "dest allocates $((alloc / MIB)) MiB; the filesystem uses $((used / MIB)) MiB"
	[ "$alloc" -le $((used + 8 * MIB)) ] ||
		die "dest allocates $alloc bytes, the filesystem uses only $used"
	new_loop "$T/dest" -r
	dev=$LOOP
	mount_fs "$dev" "$T/fs" ro
	(cd "$T/fs" && sha256sum --quiet -c "$T/sums") || die "files in dest differ"
	umount_fs "$T/fs"
	free_loop "$dev"
}

# buffered loop; mkfs discards the device, background hydration at full speed
run_pass "" 0 "" ""
# direct I/O loop; no discard at mkfs, so the junk gets hydrated, slowly
# enough that it runs all through mkfs, the copy and fstrim
run_pass "--direct-io=on" 1 "hydration_rate=4M" "-E nodiscard"
pass
