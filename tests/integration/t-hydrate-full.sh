#!/bin/bash
# Full background hydration of a random 256 MiB source while a random writer
# runs: DEST ends byte-identical to the model (SOURCE plus the writes), and
# the daemon keeps serving after it is done (spec 3.1, 3.2, 3.4).
. "$(dirname "$0")/lib.sh"

make_source "$T/src" 256
cp "$T/src" "$T/model"
mount_clone "$T/src" "$T/dest" "$T/meta" "$T/m"
$IOMODEL random "$T/m/image" "$T/model" --ops 4000 --seed 7 --fsync-every 500
poll 120 hydrated_all "$T/m" || die "hydration did not finish: $(status_field "$T/m" 4)"
[ "$(json_field "$T/m" hydration_done)" = True ] || die "status does not say done"
[ "$(status_field "$T/m" 5)" = 0 ] || die "regions still hydrating after done"
# still serving: more I/O after completion
$IOMODEL random "$T/m/image" "$T/model" --ops 500 --seed 8
unmount_clone "$T/m" "$T/meta"
cmp "$T/dest" "$T/model" || die "dest differs from the model"
pass
