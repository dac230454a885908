#!/bin/bash
# Bad input: one clear line naming the file, a non-zero exit, nothing
# modified (spec 1.2, 1.3, 1.5): wrong sizes and geometry, corrupt META, a
# DEST that is not the one META records hydrated regions of, a META whose
# format was cut short.
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
# DEST and META belong together (spec 1.5): META records region 0 hydrated
expect_refusal "remove META to start over" "$T/src" "$T/nosuchdest" "$T/meta" "$T/m"
head -c $((1024 * 1024)) "$T/dest" > "$T/shortdest"
expect_refusal "shorter than the image" "$T/src" "$T/shortdest" "$T/meta" "$T/m"
cp "$T/src" "$T/otherdest"
printf 'x' | dd of="$T/otherdest" bs=1 seek=100 conv=notrunc status=none
expect_refusal "not the file meta" "$T/src" "$T/otherdest" "$T/meta" "$T/m"
mv "$T/dest" "$T/dest.away"
expect_refusal "remove META to start over" "$T/src" "$T/dest" "$T/meta" "$T/m"
expect_refusal "remove META to start over" "$T/src" "$T/dest" "$T/meta" "$T/m" -o ro
mv "$T/dest.away" "$T/dest"
mount_clone "$T/src" "$T/dest" "$T/meta" "$T/m" "no_hydration"
[ "$(dd if="$T/m/image" bs=1 skip=100 count=1 status=none)" = x ] ||
	die "the right DEST lost its write"
unmount_clone "$T/m" "$T/meta"
rm -f "$T/shortdest" "$T/otherdest"

# a DEST recreated while META records no hydrated region is taken, and
# tagged as META's: once regions hydrate into it, it is still the right one
mount_clone "$T/src" "$T/destn" "$T/metan" "$T/m" "no_hydration"
unmount_clone "$T/m" "$T/metan"
rm "$T/destn"
mount_clone "$T/src" "$T/destn" "$T/metan" "$T/m" "no_hydration"
printf 'y' | dd of="$T/m/image" bs=1 seek=100 conv=notrunc status=none
unmount_clone "$T/m" "$T/metan"
mount_clone "$T/src" "$T/destn" "$T/metan" "$T/m" "no_hydration" ||
	die "the recreated DEST was refused once it held hydrated regions"
[ "$(dd if="$T/m/image" bs=1 skip=100 count=1 status=none)" = y ] ||
	die "the recreated DEST lost its write"
unmount_clone "$T/m" "$T/metan"
cp "$T/src" "$T/otherdest"
expect_refusal "not the file meta" "$T/src" "$T/otherdest" "$T/metan" "$T/m"
rm -f "$T/destn" "$T/metan" "$T/otherdest"

# a remount takes META's region size when none is given (spec 1.3)
mount_clone "$T/src" "$T/dest4k" "$T/meta4k" "$T/m" "no_hydration,region_size=4k"
unmount_clone "$T/m" "$T/meta4k"
mount_clone "$T/src" "$T/dest4k" "$T/meta4k" "$T/m" "no_hydration"
[ "$(status_field "$T/m" 3)" = 8 ] || die "remount: region size $(status_field "$T/m" 3) sectors, not META's 8"
unmount_clone "$T/m" "$T/meta4k"
expect_refusal "region size" "$T/src" "$T/dest4k" "$T/meta4k" "$T/m" -o region_size=64k

# a format cut short by an error at any of its writes or its flush leaves
# META missing or valid, never bricked (spec 1.3)
for rule in meta:write:eio:after=0 meta:write:eio:after=1 meta:write:eio:after=2 \
	    meta:flush:eio meta:flush:eio:after=1; do
	rm -f "$T/destf" "$T/metaf" "$T/metaf.new"
	CLONEFS_FAULTS=$rule "$MOUNT_CLONEFS" "$T/src" "$T/destf" "$T/metaf" "$T/m" \
		-o no_hydration 2>/dev/null && { unmount_clone "$T/m" "$T/metaf"; continue; }
	mountpoint -q "$T/m" && die "mounted with $rule"
	state=missing
	if [ -e "$T/metaf" ]; then
		"$CLONEFS" check "$T/metaf" > /dev/null || die "META bricked by $rule"
		state=valid
	fi
	mount_clone "$T/src" "$T/destf" "$T/metaf" "$T/m" "no_hydration"
	cmp -n 4096 "$T/m/image" "$T/src" || die "image wrong after $rule"
	unmount_clone "$T/m" "$T/metaf"
	log "format interrupted by $rule: META $state, mounts again"
done

# usage errors
expect_refusal "expected SOURCE DEST META MOUNTPOINT" "$T/src" "$T/dest" "$T/meta"
expect_refusal "dest=DEST,meta=META" "$T/src" "$T/m"
expect_refusal "unknown option" "$T/src" "$T/dest" "$T/meta" "$T/m" --bogus
pass
