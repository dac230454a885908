#!/bin/bash
# The sync matrix under fault injection (issue 22, Tests): every sync
# primitive on every open mode (fsync, fdatasync, O_SYNC, O_DSYNC,
# RWF_SYNC, RWF_DSYNC, msync(MS_SYNC), a loop device with direct I/O off
# and on, qemu-io writethrough and directsync; buffered, O_DIRECT, mmap, a
# fully hydrated image) meets a DEST flush error, and a META write error
# where its write sets a bit: the primitive reports the error instead of
# acknowledging the write, a file open since before gets EIO from its next
# fsync once, status counts lost_writes, and META checks clean after.
# (On a hydrated image the kill test cannot tell whether a primitive
# flushed DEST at all; this can.) See syncmatrix.py --faults.
# timeout: 300
. "$(dirname "$0")/lib.sh"

atexit 'for l in $(cat "$T/loops" 2>/dev/null); do losetup -d "$l" 2>/dev/null; done'
atexit 'for p in $(cat "$T/pids" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done'
atexit 'for m in "$T"/*/m; do mountpoint -q "$m" && umount -l "$m"; done'
python3 "$TOP/tests/integration/syncmatrix.py" "$TOP" "$T" --faults ||
	die "a sync primitive acknowledged a write its flush or commit lost"
pass
