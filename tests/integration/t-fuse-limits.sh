#!/bin/bash
# What the daemon asks of the kernel at FUSE INIT, and after, reaches the
# connection (issue 7): enough async requests in flight for every thread,
# a readahead of a request per thread instead of the kernel's 128 KiB, reads of
# 512 KiB or more a request and writes of 128 KiB (each thread keeps the
# pages of the largest write it received).
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
# 128 KiB writes: a 1 MiB write at QD16 is 128 requests.
[ "$bg" -ge 128 ] || die "max_background is $bg, want at least 128 (eight per thread)"
[ "$cong" -ge 16 ] && [ "$cong" -le "$bg" ] ||
	die "congestion_threshold $cong: readahead would stall with $bg allowed"

# Readahead is raised at the first lookup, after INIT (which would undo it).
cmp "$T/src" "$T/m/image" || die "image differs from source"
ra=/sys/class/bdi/$dev/read_ahead_kb
kb=$(cat "$ra")
log "read_ahead_kb $kb"
[ "$kb" -ge 8192 ] || die "readahead of $T/m is $kb KiB, want a request per thread (16 x 512 KiB or more)"

unmount_clone "$T/m" "$T/meta"

# Request sizes, from libfuse's log of each request (-d): one O_DIRECT
# read and one write of 1 MiB.
cat > "$T/io.py" <<'PY'
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_DIRECT)
buf = mmap.mmap(-1, 1 << 20)  # page aligned, as O_DIRECT wants
n = os.preadv(fd, [buf], 0) if sys.argv[2] == "read" else os.pwritev(fd, [buf], 0)
sys.exit(n != len(buf))
PY
mount_clone_fg "$T/src" "$T/dest2" "$T/meta2" "$T/d" no_hydration -d
poll 10 test -e "$T/d/image" || die "image did not appear in $T/d"
count() { grep -c "opcode: $1 " "$T/daemon.log" || true; }
python3 "$T/io.py" "$T/d/image" read || die "1 MiB O_DIRECT read failed"
reads=$(count READ)
python3 "$T/io.py" "$T/d/image" write || die "1 MiB O_DIRECT write failed"
writes=$(count WRITE) big=$(count "WRITE .*insize: $(((128 << 10) + 80)),")
log "a 1 MiB O_DIRECT read took $reads requests, a write $writes ($big of 128 KiB)"
[ "$reads" -ge 1 ] && [ "$reads" -le 2 ] ||
	die "a 1 MiB read took $reads requests, want 1 or 2 (512 KiB or more each)"
[ "$writes" = 8 ] && [ "$big" = 8 ] || die "a 1 MiB write took $writes requests, want 8 of 128 KiB"
cmp -n $((1 << 20)) "$T/d/image" /dev/zero || die "the write did not land"
unmount_clone "$T/d" "$T/meta2"
pass
