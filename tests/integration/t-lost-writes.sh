#!/bin/bash
# Errors are never forgotten (issue 22; spec 2.5b, 4.6): with two files of
# the image open, a META write error at each write of a commit, a META
# flush error, a DEST flush error (commit by fsync and by the periodic
# timer) and a DEST write error during hydration: every file open at the
# error (read-write, O_DIRECT, read-only, a shared map's) gets EIO from its
# next fsync, fdatasync or msync(MS_SYNC) once, then 0; later opens see
# nothing; status counts lost_writes; after check and remount nothing
# fsync-acknowledged is lost. See lostwrites.py.
# timeout: 240
. "$(dirname "$0")/lib.sh"

atexit 'for p in $(cat "$T/pids" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done'
atexit 'for m in "$T"/*/m; do mountpoint -q "$m" && umount -l "$m"; done'
python3 "$TOP/tests/integration/lostwrites.py" "$TOP" "$T" || die "errors forgotten or data lost"
pass
