#!/bin/bash
# clonefs status / message / wait (spec 5.1-5.4): the status line field by
# field in known states, JSON through a real parser, each message visible in
# status, bad messages refused with nothing changed, wait returns when done.
. "$(dirname "$0")/lib.sh"

make_source "$T/src" 32   # 512 regions of 64 KiB
mount_clone "$T/src" "$T/dest" "$T/meta" "$T/m" "no_hydration"

# field N of `clonefs status`
sf() { $CLONEFS status "$T/m" | awk -v n="$1" '{print $n}'; }
expect_line() { # expect_line REGEX: the whole status line
	local line; line=$($CLONEFS status "$T/m")
	[[ $line =~ ^$1$ ]] || die "status '$line' does not match '$1'"
}
same_via_xattr() { # while nothing moves, the xattr says what the tool says
	[ "$(getfattr --absolute-names --only-values -n user.clonefs.status "$T/m/image")" = \
	  "$($CLONEFS status "$T/m")" ] || die "xattr and tool disagree"
}

# fresh, no_hydration
expect_line "8 [0-9]+/[0-9]+ 128 0/512 0 1 no_hydration 4 hydration_threshold 64 hydration_batch_size 16 rw"
same_via_xattr
used=$(sf 2); [ "${used%/*}" -ge 1 ] && [ "${used%/*}" -lt "${used#*/}" ] || die "meta blocks $used"

# partly hydrated: 3 whole regions written, 1 partial
dd if=/dev/zero of="$T/m/image" bs=64k count=3 seek=10 conv=notrunc,fsync status=none
printf x | dd of="$T/m/image" bs=1 seek=$((100 * 65536 + 5)) conv=notrunc,fsync status=none
expect_line "8 [0-9]+/[0-9]+ 128 4/512 0 1 no_hydration 4 hydration_threshold 64 hydration_batch_size 16 rw"

# messages, each visible at once
$CLONEFS message "$T/m" hydration_threshold 3
$CLONEFS message "$T/m" hydration_batch_size 2
expect_line "8 [0-9]+/[0-9]+ 128 4/512 0 1 no_hydration 4 hydration_threshold 3 hydration_batch_size 2 rw"
$CLONEFS message "$T/m" hydration_rate 4M
[ "$($CLONEFS status "$T/m" --json | jq .hydration_rate_limit)" = 4194304 ] || die "rate not set"
$CLONEFS message "$T/m" copy_on_read on
[ "$($CLONEFS status "$T/m" --json | jq .copy_on_read)" = true ] || die "copy_on_read not set"
$CLONEFS message "$T/m" copy_on_read off

# bad messages: clear error, non-zero exit, nothing changed
before=$($CLONEFS status "$T/m")
for bad in "frobnicate" "hydration_threshold" "hydration_threshold 0" "hydration_threshold x" \
	"hydration_batch_size 99999999999" "copy_on_read maybe" "enable_hydration now"; do
	out=$($CLONEFS message "$T/m" $bad 2>&1) && die "accepted bad message: $bad"
	[ "$(echo "$out" | wc -l)" = 1 ] || die "not one line for '$bad': $out"
	log "refused '$bad': $out"
done
setfattr -n user.clonefs.message -v "bogus" "$T/m/image" 2>/dev/null && die "daemon accepted bogus"
[ "$($CLONEFS status "$T/m")" = "$before" ] || die "a bad message changed the status"

# JSON: valid for two parsers, same numbers as the line
$CLONEFS status "$T/m" --json | python3 -m json.tool > /dev/null || die "JSON invalid (python)"
j=$($CLONEFS status "$T/m" --json)
[ "$(echo "$j" | jq .hydrated_regions)" = 4 ] || die "json hydrated_regions"
[ "$(echo "$j" | jq .total_regions)" = 512 ] || die "json total_regions"
[ "$(echo "$j" | jq -r '.features[0]')" = no_hydration ] || die "json features"
[ "$(echo "$j" | jq .bytes_total)" = $((32 << 20)) ] || die "json bytes_total"
[ "$(echo "$j" | jq .bytes_hydrated)" = $((4 * 65536)) ] || die "json bytes_hydrated"
[ "$(echo "$j" | jq -r .mode)" = rw ] || die "json mode"

# wait: times out while hydration is off, returns once it is done
rc=0; timeout 20 $CLONEFS wait "$T/m" --timeout 1 > "$T/wait.out" 2>&1 || rc=$?
[ $rc = 124 ] || die "wait with hydration off returned $rc, expected 124"
$CLONEFS message "$T/m" enable_hydration
$CLONEFS message "$T/m" hydration_rate 0
expect_line "8 [0-9]+/[0-9]+ 128 [0-9]+/512 [0-9]+ 0 4 hydration_threshold 3 hydration_batch_size 2 rw"
timeout 60 $CLONEFS wait "$T/m" --timeout 50 > "$T/wait.out" 2>&1 || die "wait failed: $(cat "$T/wait.out")"
expect_line "8 [0-9]+/[0-9]+ 128 512/512 0 0 4 hydration_threshold 3 hydration_batch_size 2 rw"
same_via_xattr
[ "$($CLONEFS status "$T/m" --json | jq .hydration_done)" = true ] || die "json not done"

# not a clonefs mount
out=$($CLONEFS status "$T" 2>&1) && die "status of a plain dir succeeded"
echo "$out" | grep -q "not a clonefs mount" || die "unclear error: $out"
unmount_clone "$T/m" "$T/meta"
$CLONEFS check "$T/meta" || die "check not clean after clean unmount"
[ "$($CLONEFS dump "$T/meta" | jq -c '[.hydrated, .hydrated_runs]')" = '[512,[[0,512]]]' ] || die "dump does not show 512 hydrated regions in one run"

# the newest superblock torn: check says it fell back, how many regions
# now read SOURCE again (the count it gives is what was lost), exits 3
slot=$($CLONEFS dump "$T/meta" | jq .active_slot)
printf 'torn' | dd of="$T/meta" bs=1 seek=$((slot * 4096 + 100)) conv=notrunc status=none
rc=0; $CLONEFS check -n "$T/meta" > /dev/null 2>&1 || rc=$?
[ $rc = 1 ] || die "check -n of a torn superblock exited $rc, want 1"
rc=0; $CLONEFS check "$T/meta" > "$T/check.out" 2>&1 || rc=$?
[ $rc = 3 ] || die "check falling back exited $rc, want 3: $(cat "$T/check.out")"
lost=$(sed -n 's/.*fell back to transaction [0-9]*: \([0-9]*\) regions hydrated .* read SOURCE again.*/\1/p' "$T/check.out")
[ -n "$lost" ] || die "check does not say what it fell back to: $(cat "$T/check.out")"
$CLONEFS check -n "$T/meta" > /dev/null || die "not clean after the repair"
left=$($CLONEFS dump "$T/meta" | jq .hydrated)
[ $((512 - left)) = "$lost" ] || die "check said $lost regions read SOURCE again; $((512 - left)) do"
pass
