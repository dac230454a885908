#!/bin/bash
# What the daemon asks of the kernel at FUSE INIT, and after, reaches the
# connection (issue 7): enough async requests in flight for every thread,
# and a readahead of several requests instead of the kernel's 128 KiB.
. "$(dirname "$0")/lib.sh"

make_source "$T/src" 8
mount_clone "$T/src" "$T/dest" "$T/meta" "$T/m" no_hydration
fusectl_up || die "cannot mount fusectl on /sys/fs/fuse/connections"
dev=$(mountpoint -d "$T/m")
conn=/sys/fs/fuse/connections/${dev#*:}
[ -r "$conn/max_background" ] || die "no fusectl directory $conn for $T/m"

# The kernel's default is 12 (congestion at 9); the daemon runs 16 threads.
bg=$(cat "$conn/max_background") cong=$(cat "$conn/congestion_threshold")
log "max_background $bg, congestion_threshold $cong"
[ "$bg" -ge 32 ] || die "max_background is $bg, want at least 32 (two per thread)"
[ "$cong" -ge 16 ] && [ "$cong" -le "$bg" ] ||
	die "congestion_threshold $cong: readahead would stall with $bg allowed"

# Readahead is raised at the first lookup, after INIT (which would undo it).
cmp "$T/src" "$T/m/image" || die "image differs from source"
ra=/sys/class/bdi/$dev/read_ahead_kb
kb=$(cat "$ra")
log "read_ahead_kb $kb"
[ "$kb" -ge 1024 ] || die "readahead of $T/m is $kb KiB, want 4 requests' worth (>= 1 MiB)"
unmount_clone "$T/m" "$T/meta"
pass
