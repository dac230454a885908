#!/bin/bash
# Durability of every sync primitive on every open mode (issue 22; spec
# 2.5, 2.5a): fsync, fdatasync, O_SYNC, O_DSYNC, RWF_SYNC, RWF_DSYNC,
# msync(MS_SYNC), a loop device (direct I/O off and on; dd oflag=dsync,
# conv=fsync) and qemu-io (writethrough, directsync),
# on buffered, O_DIRECT and mmap opens, a fully hydrated (passed-through)
# image and one still hydrating: SIGKILL the daemon as soon as the write is
# acknowledged, remount, and the write must be there. See syncmatrix.py.
# timeout: 300
. "$(dirname "$0")/lib.sh"

# what python started, should python itself be killed
atexit 'for l in $(cat "$T/loops" 2>/dev/null); do losetup -d "$l" 2>/dev/null; done'
atexit 'for p in $(cat "$T/pids" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done'
atexit 'for m in "$T"/*/m; do mountpoint -q "$m" && umount -l "$m"; done'
python3 "$TOP/tests/integration/syncmatrix.py" "$TOP" "$T" || die "acknowledged writes lost"
pass
