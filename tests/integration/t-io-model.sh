#!/bin/bash
# Random mixed reads and writes (aligned, unaligned, spanning regions, at the
# image end) against a model: every read matches, and again after a remount
# (spec 2.1-2.4a, 5.5). CLONEFS_TEST_NBD=1: SOURCE over NBD (t-nbd-io-model).
. "$(dirname "$0")/lib.sh"

# 8 MiB + an odd tail, so the last region is short.
make_source "$T/src" 8
head -c 12345 /dev/urandom >> "$T/src"
cp "$T/src" "$T/model"
serve_source "$T/src"
for rs in 4096 65536; do
	rm -f "$T/dest" "$T/meta"
	mount_clone "$SRC" "$T/dest" "$T/meta" "$T/m" "no_hydration,region_size=$rs"
	cmp "$T/src" "$T/m/image" || die "fresh clone differs from source"
	$IOMODEL random "$T/m/image" "$T/model" --region $rs --ops 3000 --seed $rs --fsync-every 300
	unmount_clone "$T/m" "$T/meta"
	cmp -s "$T/src" "$T/dest" && die "dest equals source although hydration was off"

	# remount: the bitmap persisted, so the writes are still there
	mount_clone "$SRC" "$T/dest" "$T/meta" "$T/m" "no_hydration,region_size=$rs"
	$IOMODEL verify "$T/m/image" "$T/model"
	# and again with hydration running under more random I/O
	$CLONEFS message "$T/m" enable_hydration 2>/dev/null ||
		setfattr -n user.clonefs.message -v enable_hydration "$T/m/image"
	$IOMODEL random "$T/m/image" "$T/model" --region $rs --ops 1000 --seed $((rs + 1))
	poll 60 hydrated_all "$T/m" || die "hydration did not finish"
	unmount_clone "$T/m" "$T/meta"
	cmp "$T/dest" "$T/model" || die "dest is not the model after hydration"
	cp "$T/src" "$T/model"
done
pass
