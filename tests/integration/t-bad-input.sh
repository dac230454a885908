#!/bin/bash
# Bad input: one clear line naming the file, a non-zero exit, nothing
# modified (spec 1.2, 1.3).
. "$(dirname "$0")/lib.sh"

make_source "$T/src" 4
mkdir -p "$T/m"

# expect_refusal WORD-IN-ERROR ARGS...: mount must fail with one line naming WORD
expect_refusal() {
	local want=$1; shift
	local before after out rc=0
	before=$(cd "$T" && find . -path ./m -prune -o -type f -print0 | sort -z | xargs -0 -r sha1sum)
	out=$("$MOUNT_CLONEFS" "$@" 2>&1) || rc=$?
	[ $rc -ne 0 ] || die "accepted: $* ($out)"
	[ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ] || die "not one line: $out"
	printf '%s\n' "$out" | grep -qF -- "$want" || die "error does not name $want: $out"
	after=$(cd "$T" && find . -path ./m -prune -o -type f -print0 | sort -z | xargs -0 -r sha1sum)
	[ "$before" = "$after" ] || die "files changed by refused mount: $*"
	mountpoint -q "$T/m" && die "mounted anyway: $*"
	log "refused ($rc): $out"
}

expect_refusal "$T/nosuch" "$T/nosuch" "$T/dest" "$T/meta" "$T/m"
expect_refusal "$T/src" "$T/src" "$T/src" "$T/meta" "$T/m"
expect_refusal "$T/src" "$T/src" "$T/dest" "$T/src" "$T/m"
ln "$T/src" "$T/hardlink"
expect_refusal "$T/hardlink" "$T/src" "$T/hardlink" "$T/meta" "$T/m"
expect_refusal "region_size" "$T/src" "$T/dest" "$T/meta" "$T/m" -o region_size=12345
expect_refusal "region_size" "$T/src" "$T/dest" "$T/meta" "$T/m" -o region_size=2k
expect_refusal "$T/nomnt" "$T/src" "$T/dest" "$T/meta" "$T/nomnt"
expect_refusal "hydration_threshold" "$T/src" "$T/dest" "$T/meta" "$T/m" -o hydration_threshold=0
head -c $((5 * 1024 * 1024)) /dev/zero > "$T/bigdest"
expect_refusal "$T/bigdest" "$T/src" "$T/bigdest" "$T/meta" "$T/m"
rm "$T/bigdest"

# META of another geometry: make one with 64k regions, then ask for 4k
mount_clone "$T/src" "$T/dest" "$T/meta" "$T/m" "no_hydration"
printf 'x' | dd of="$T/m/image" bs=1 seek=100 conv=notrunc status=none
unmount_clone "$T/m" "$T/meta"
expect_refusal "$T/meta" "$T/src" "$T/dest" "$T/meta" "$T/m" -o region_size=4k
# META of a source of another size
head -c $((2 * 1024 * 1024)) /dev/urandom > "$T/src2"
expect_refusal "$T/meta" "$T/src2" "$T/dest2" "$T/meta" "$T/m"
# corrupt META
cp "$T/meta" "$T/meta.bad"
printf 'garbage!' | dd of="$T/meta.bad" bs=1 seek=100 conv=notrunc status=none
printf 'garbage!' | dd of="$T/meta.bad" bs=1 seek=4196 conv=notrunc status=none
expect_refusal "$T/meta.bad" "$T/src" "$T/dest" "$T/meta.bad" "$T/m"
printf 'not clonefs metadata' > "$T/meta.junk"
expect_refusal "$T/meta.junk" "$T/src" "$T/dest" "$T/meta.junk" "$T/m"
# usage errors
expect_refusal "expected SOURCE DEST META MOUNTPOINT" "$T/src" "$T/dest" "$T/meta"
expect_refusal "dest=DEST,meta=META" "$T/src" "$T/m"
expect_refusal "unknown option" "$T/src" "$T/dest" "$T/meta" "$T/m" --bogus
pass
