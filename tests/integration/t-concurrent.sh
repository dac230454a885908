#!/bin/bash
# Concurrent writers on the same regions while they hydrate: nothing lost,
# nothing overwritten by the copy (spec 2.4).
. "$(dirname "$0")/lib.sh"

make_source "$T/src" 32
for round in 1 2 3 4 5; do
	rm -f "$T/dest" "$T/meta"
	cp "$T/src" "$T/model"
	# big regions and small batches make writes race the background copy
	mount_clone "$T/src" "$T/dest" "$T/meta" "$T/m" \
		"region_size=1M,hydration_batch_size=1,hydration_threshold=2"
	$IOMODEL concurrent "$T/m/image" "$T/model" --region 1048576 --regions 3 \
		--writers 8 --seed $round
	poll 60 hydrated_all "$T/m" || die "hydration did not finish"
	$IOMODEL verify "$T/m/image" "$T/model"
	unmount_clone "$T/m" "$T/meta"
	cmp "$T/dest" "$T/model" || die "round $round: dest differs from model"
done
pass
