#!/bin/bash
# Faults of an NBD SOURCE are normal (spec 1.4, 1.7, 3.1; issue 24), with
# real faults from nbdkit's filters:
#   1. the server fails reads (error filter, while a file exists): user reads
#      get EIO, copies fail and are counted, nothing is marked hydrated; once
#      the errors stop, hydration finishes by itself and DEST equals SOURCE;
#   2. one read in ten fails all through hydration: DEST still equals SOURCE
#      (no region is ever marked from a failed read);
#   3. a server too slow for source_timeout: the read fails with EIO at the
#      timeout, not when the server answers;
#   4. the server is killed in the middle of hydration and restarted: status
#      says retrying, a read of an unhydrated region fails within the
#      timeout, hydration resumes by itself and DEST equals SOURCE.
# timeout: 180
. "$(dirname "$0")/lib.sh"

make_source "$T/src" 16

# read_fails MNT OFFSET: a 4 KiB O_DIRECT read of the image there fails with EIO.
read_fails() {
	local out
	out=$(dd if="$1/image" of=/dev/null bs=4k skip=$(($2 / 4096)) count=1 iflag=direct 2>&1) &&
		die "read at $2 succeeded"
	echo "$out" | grep -q "Input/output error" || die "read at $2: not EIO: $out"
}
ms() { echo $(( $(date +%s%N) / 1000000 )); }
# for poll: re-read on every try
copy_errors_at_least() { [ "$(json_field "$1" copy_errors)" -ge "$2" ]; }
source_state_is() { [ "$(source_json "$1" state)" = "$2" ]; }

# 1. reads fail while $T/fail exists
nbd_serve "$T/src" err --filter=error error-pread-rate=100% error-pread-file="$T/fail"
touch "$T/fail"
mount_clone "$NBD_URI" "$T/dest" "$T/meta" "$T/m" no_hydration
read_fails "$T/m" $((5 << 20))
message "$T/m" enable_hydration
poll 30 copy_errors_at_least "$T/m" 2 || die "copies did not fail"
[ "$(hydrated_count "$T/m")" = 0 ] || die "regions marked hydrated from failed reads"
[ "$(source_json "$T/m" state)" = connected ] || die "server errors taken for a lost connection"
[ "$(source_json "$T/m" read_errors)" -ge 2 ] || die "read errors not counted"
log "while failing: $(json_field "$T/m" last_error)"
rm "$T/fail"
poll 60 hydrated_all "$T/m" || die "hydration did not resume after the errors stopped"
unmount_clone "$T/m" "$T/meta"
cmp "$T/src" "$T/dest" || die "dest differs from source (1)"
nbd_stop "$NBD_PID"

# 2. one read in ten fails, all through the copy
rm -f "$T/dest" "$T/meta"
nbd_serve "$T/src" rnd --filter=error error-pread-rate=10%
mount_clone "$NBD_URI" "$T/dest" "$T/meta" "$T/m"
poll 90 hydrated_all "$T/m" || die "hydration did not finish with 10% read errors"
errs=$(json_field "$T/m" copy_errors)
[ "$errs" -ge 1 ] || die "no copy failed: the error filter did nothing?"
unmount_clone "$T/m" "$T/meta"
cmp "$T/src" "$T/dest" || die "dest differs from source after $errs failed copies"
log "10% read errors: $errs failed copies, dest equals source"
nbd_stop "$NBD_PID"

# 3. a server slower than the timeout
rm -f "$T/dest" "$T/meta"
nbd_serve "$T/src" slow --filter=delay delay-read=4
mount_clone "$NBD_URI" "$T/dest" "$T/meta" "$T/m" no_hydration,source_timeout=1
t0=$(ms)
read_fails "$T/m" $((3 << 20))
dt=$(( $(ms) - t0 ))
[ "$dt" -ge 900 ] && [ "$dt" -lt 3500 ] || die "read failed after $dt ms, timeout 1 s"
[ "$(source_json "$T/m" timeouts)" -ge 1 ] || die "timeout not counted"
log "slow server: EIO after $dt ms"
unmount_clone "$T/m" "$T/meta"
nbd_stop "$NBD_PID"

# 4. the server is killed in the middle of hydration, and restarted (4 MiB/s:
# 4 s in all)
rm -f "$T/dest" "$T/meta"
nbd_serve "$T/src" rst
mount_clone "$NBD_URI" "$T/dest" "$T/meta" "$T/m" source_timeout=2,region_size=256k,hydration_rate=4M,hydration_batch_size=1
poll 30 hydrated_at_least "$T/m" 4 || die "hydration did not start"
nbd_stop "$NBD_PID"
h=$(hydrated_count "$T/m")
[ "$h" -lt 64 ] || die "hydration finished before the server went away"
poll 30 source_state_is "$T/m" retrying || die "status does not say retrying"
t0=$(ms)
read_fails "$T/m" $(((16 << 20) - 4096))
dt=$(( $(ms) - t0 ))
[ "$dt" -lt 4000 ] || die "a read took $dt ms to fail with the server away (timeout 2 s)"
log "server away at $h/64 regions: $(source_json "$T/m" last_error); a read failed after $dt ms"
[ "$(hydrated_count "$T/m")" -lt 64 ] || die "all hydrated with the server away"
nbd_serve "$T/src" rst
poll 60 hydrated_all "$T/m" || die "hydration did not resume after the server came back"
[ "$(source_json "$T/m" state)" = connected ] || die "status does not say connected"
dd if="$T/m/image" bs=4k skip=$(((16 << 20) / 4096 - 1)) count=1 iflag=direct status=none |
	cmp - <(tail -c 4096 "$T/src") || die "read after the restart differs"
unmount_clone "$T/m" "$T/meta"
cmp "$T/src" "$T/dest" || die "dest differs from source after the restart"
pass
