#!/bin/bash
# Memory per request is O(1) in the regions it covers (spec 2.10): a discard
# of a whole 16 GiB image at 4 KiB regions (4M regions, one region lock
# range) must not grow the daemon by a lock entry per region. The image then
# reads zeros where SOURCE had data, every region is marked, and DEST stays
# a hole.
. "$(dirname "$0")/lib.sh"

G=$((1024 * 1024 * 1024))
SIZE=$((16 * G))
OFFS="0 $((5 * G + 12345)) $((8 * G)) $((SIZE - 4096))"
truncate -s "$SIZE" "$T/src"
# SOURCE data at a few offsets, so that zeros afterwards mean something
python3 - "$T/src" $OFFS <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
for off in map(int, sys.argv[2:]):
    os.pwrite(fd, b"S" * 4096, off)
PY

# vmhwm PID: the peak resident set, KiB
vmhwm() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

# reads MNT BYTE: 4 KiB at each offset are all BYTE (a one-character string)
reads() {
	python3 - "$1/image" "$2" $OFFS <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
want = sys.argv[2].encode() if sys.argv[2] != "0" else b"\0"
for off in map(int, sys.argv[3:]):
    got = os.pread(fd, 4096, off)
    assert got == want * 4096, "at %d: %r..." % (off, got[:16])
PY
}

mount_clone_fg "$T/src" "$T/dest" "$T/meta" "$T/m" "region_size=4096,no_hydration"
total=$(status_field "$T/m" 4); total=${total#*/}
[ "$total" = $((SIZE / 4096)) ] || die "region count $total"
reads "$T/m" S || die "image does not read SOURCE's data"
[ "$(hydrated_count "$T/m")" = 0 ] || die "regions hydrated before the discard"
before=$(vmhwm "$DAEMON_PID")
log "daemon peak before the discard: $before KiB"

fallocate -p -o 0 -l "$SIZE" "$T/m/image" || die "punching the whole image failed"
after=$(vmhwm "$DAEMON_PID")
log "daemon peak after the discard: $after KiB (+$((after - before)) KiB)"
[ $((after - before)) -lt $((24 * 1024)) ] ||
	die "a discard of $total regions grew the daemon by $((after - before)) KiB"

daemon_alive "$T/m" "after the discard"
reads "$T/m" 0 || die "image does not read zeros after the discard"
[ "$(hydrated_count "$T/m")" = "$total" ] ||
	die "$(hydrated_count "$T/m") of $total regions marked after the discard"
[ "$(json_field "$T/m" bytes_copied)" = 0 ] || die "the discard copied data"
unmount_clone "$T/m" "$T/meta"
reap "$DAEMON_PID"
[ "$(stat -c %b "$T/dest")" -le 64 ] || die "dest allocates $(stat -c %b "$T/dest") sectors"
pass
