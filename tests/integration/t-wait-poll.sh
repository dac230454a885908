#!/bin/bash
# poll(2) on the image reports POLLPRI once every region is hydrated, and
# not before, so clonefs wait sleeps in poll and returns as the copy ends
# (spec 3.4): after background copies, and after writes that cover every
# region while hydration is off.
. "$(dirname "$0")/lib.sh"

# pollpri IMAGE MS: "PRI" if poll(2) saw POLLPRI within MS milliseconds,
# else "none" (a daemon without poll answers at once without POLLPRI).
pollpri() {
	python3 - "$1" "$2" <<'PY'
import os, select, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
p = select.poll()
p.register(fd, select.POLLPRI)
ev = p.poll(int(sys.argv[2]))
print("PRI" if ev and ev[0][1] & select.POLLPRI else "none")
PY
}

make_source "$T/src" 16

# 1. not hydrated: no POLLPRI; enable hydration: POLLPRI, and by then the
# status shows every region hydrated.
mount_clone "$T/src" "$T/dest" "$T/meta" "$T/m" no_hydration,region_size=64k
[ "$(pollpri "$T/m/image" 300)" = none ] || die "POLLPRI before any region was hydrated"
pollpri "$T/m/image" 30000 > "$T/pri" &
_pids+=($!)
poller=$!
message "$T/m" enable_hydration
reap $poller || die "poller failed"
[ "$(cat "$T/pri")" = PRI ] || die "no POLLPRI within 30 s of enable_hydration"
[ "$(hydrated_count "$T/m")" = 256 ] || die "POLLPRI before the last region: $(status_field "$T/m" 4)"
# and at once on a hydrated image; clonefs wait returns at once too
[ "$(pollpri "$T/m/image" 0)" = PRI ] || die "no POLLPRI on a hydrated image"
timeout 10 "$CLONEFS" wait "$T/m" > "$T/wait.out" || die "clonefs wait failed on a hydrated image"
unmount_clone "$T/m" "$T/meta"
cmp "$T/src" "$T/dest" || die "dest differs from source"

# 2. hydration off, and writes cover every region: the scheduler still sees
# the end (within a second) and wakes pollers.
rm -f "$T/dest" "$T/meta"
mount_clone "$T/src" "$T/dest" "$T/meta" "$T/m" no_hydration,region_size=64k
pollpri "$T/m/image" 30000 > "$T/pri" &
_pids+=($!)
poller=$!
make_source "$T/new" 16
dd if="$T/new" of="$T/m/image" bs=1M conv=notrunc,fsync status=none
reap $poller || die "poller failed"
[ "$(cat "$T/pri")" = PRI ] || die "no POLLPRI after writes covered every region"
[ "$(status_field "$T/m" 4)" = 256/256 ] || die "not all hydrated: $(status_field "$T/m" 4)"
cmp "$T/new" "$T/m/image" || die "image differs from what was written"
unmount_clone "$T/m" "$T/meta"
pass
