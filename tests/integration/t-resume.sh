#!/bin/bash
# Remount mid-hydration continues where it stopped without copying again
# what was hydrated (spec 5.5).
. "$(dirname "$0")/lib.sh"

make_source "$T/src" 64
mount_clone "$T/src" "$T/dest" "$T/meta" "$T/m" "hydration_rate=16M"
poll 30 hydrated_at_least "$T/m" 200 || die "no progress"
unmount_clone "$T/m" "$T/meta"
# foreground this time, so the log can be read (spec 3.4: done is logged once)
mount_clone_fg "$T/src" "$T/dest" "$T/meta" "$T/m" "no_hydration"
done1=$(hydrated_count "$T/m")
[ "$done1" -ge 200 ] && [ "$done1" -lt 1024 ] || die "unexpected count after remount: $done1"
message "$T/m" enable_hydration
poll 60 hydrated_all "$T/m" || die "did not finish after remount"
copied=$(json_field "$T/m" bytes_copied)
left=$(((1024 - done1) * 65536))
log "hydrated before remount: $done1 regions; copied after: $copied bytes (left: $left)"
[ "$copied" -le "$left" ] || die "copied $copied bytes, more than the $left left"
cat "$T/m/image" > /dev/null   # more I/O after done must not log it again
unmount_clone "$T/m" "$T/meta"
[ "$(grep -c "hydration complete" "$T/daemon.log")" = 1 ] ||
	die "'hydration complete' not logged exactly once: $(cat "$T/daemon.log")"
cmp "$T/src" "$T/dest" || die "dest differs from source"
pass
