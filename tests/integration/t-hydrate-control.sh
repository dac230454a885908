#!/bin/bash
# Background hydration is switched off and on at run time, bounded by a rate
# that can change at run time, and reads can jump the queue (spec 3.3, 3.6,
# 3.7, 5.2).
. "$(dirname "$0")/lib.sh"

make_source "$T/src" 64
# 1. no_hydration: nothing is copied while off; enable resumes to the end.
mount_clone "$T/src" "$T/dest" "$T/meta" "$T/m" "no_hydration"
[ "$(status_field "$T/m" 6)" = 1 ] && [ "$(status_field "$T/m" 7)" = no_hydration ] ||
	die "status does not show no_hydration"
cat "$T/m/image" > /dev/null
[ "$(hydrated_count "$T/m")" = 0 ] || die "regions hydrated while hydration was off"
message "$T/m" enable_hydration
[ "$(status_field "$T/m" 6)" = 0 ] || die "feature no_hydration still shown"
poll 60 hydrated_all "$T/m" || die "hydration did not finish after enable"
unmount_clone "$T/m" "$T/meta"
cmp "$T/src" "$T/dest" || die "dest differs from source"

# 2. disable mid-way: the count stops moving; enable: it finishes.
rm -f "$T/dest" "$T/meta"
mount_clone "$T/src" "$T/dest" "$T/meta" "$T/m" "hydration_rate=8M,hydration_batch_size=1"
poll 30 hydrated_at_least "$T/m" 1 || die "no progress"
message "$T/m" disable_hydration
poll 10 none_in_flight "$T/m" || die "copies still in flight after disable"
a=$(hydrated_count "$T/m")
# Watch for a while: a stopped engine does not move (a measurement, not a wait).
end=$((SECONDS + 2))
while [ $SECONDS -lt $end ]; do
	[ "$(hydrated_count "$T/m")" = "$a" ] || die "hydration moved while disabled"
	sleep 0.2
done
[ "$a" -lt 1024 ] || die "finished before it could be disabled"

# 3. rate limit: at 8 MiB/s, 2 s of copying cannot reach 64 MiB.
message "$T/m" enable_hydration
start=$(hydrated_count "$T/m")
t0=$(date +%s.%N)
poll 30 hydrated_at_least "$T/m" $((start + 128)) || die "no progress at 8M/s"
t1=$(date +%s.%N)
python3 -c "import sys; t=$t1-$t0; sys.exit(0 if t > 0.6 else 1)" ||
	die "8 MiB at 8 MiB/s took under 0.6 s: rate not enforced"
# lift the limit at run time: the rest goes fast
message "$T/m" hydration_rate 0
poll 30 hydrated_all "$T/m" || die "did not finish after lifting the rate"
unmount_clone "$T/m" "$T/meta"
cmp "$T/src" "$T/dest" || die "dest differs from source"

# 4. copy_on_read: with a slow cursor, regions that are read are hydrated
# before the cursor reaches them.
rm -f "$T/dest" "$T/meta"
mount_clone "$T/src" "$T/dest" "$T/meta" "$T/m" \
	"copy_on_read,hydration_rate=256k,hydration_batch_size=1,hydration_threshold=1"
# Read requests queue ahead of the cursor: once the count has grown by the
# 8 regions read plus the one cursor copy that may be in flight, they are in.
# O_DIRECT, so that only these 8 are read: the image's readahead (16
# requests of 512 KiB, sent at once) would queue the regions after them too,
# in no set order, and some of those could be copied before region 1007.
c0=$(hydrated_count "$T/m")
dd if="$T/m/image" of=/dev/null bs=64k skip=1000 count=8 iflag=direct status=none
poll 20 hydrated_at_least "$T/m" $((c0 + 9)) || die "read regions not hydrated"
message "$T/m" disable_hydration
poll 10 none_in_flight "$T/m" || die "copies still in flight"
unmount_clone "$T/m" "$T/meta"
# regions 1000..1007 (bytes 62.5 MiB..63 MiB) are in DEST, far ahead of the cursor
cmp -n $((8 * 65536)) -i $((1000 * 65536)) "$T/src" "$T/dest" ||
	die "copy_on_read regions not in dest"
pass
