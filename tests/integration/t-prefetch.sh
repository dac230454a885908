#!/bin/bash
# Access profiles (spec 3.9): the daemon records the order regions are
# first touched; `clonefs profile save` writes it, `-o prefetch=` (and the
# prefetch message) hydrate its regions first, in its order; corrupt and
# foreign profiles are refused; profiles merge; a crash mid-prefetch loses
# nothing and the remount goes on prefetching.
# timeout: 90
. "$(dirname "$0")/lib.sh"

make_source "$T/src" 64 # 1024 regions of 64 KiB
rd() { dd if="$T/m/image" of=/dev/null bs=64k skip="$1" count="$2" iflag=direct status=none; }

# 1. Record and save: reads and a write, in this order.
mount_clone "$T/src" "$T/dest" "$T/meta" "$T/m" "no_hydration"
rd 900 3
rd 100 1
dd if=/dev/zero of="$T/m/image" bs=4k seek=$((50 * 16)) count=1 conv=notrunc,fsync status=none
rd 600 2
rd 901 1 # seen already
"$CLONEFS" profile save "$T/m" "$T/boot.profile" | grep -q "7 regions in 4 runs" ||
	die "profile save did not report 7 regions in 4 runs"
"$CLONEFS" profile show "$T/boot.profile" > "$T/show"
printf '900 3\n100 1\n50 1\n600 2\n' | cmp - <(tail -n +2 "$T/show") ||
	die "profile runs are not in first-touch order: $(cat "$T/show")"
grep -q "^image_size 67108864 region_size 65536 regions 1024 runs 4 profiled 7$" "$T/show" ||
	die "profile header: $(head -1 "$T/show")"
unmount_clone "$T/m" "$T/meta"

# 2. Prefetch on a fresh clone: the profile's regions first, in its order,
# while the sweep crawls; wait --prefetch returns once they are in.
rm -f "$T/dest" "$T/meta"
CLONEFS_WRITELOG=$T/wlog mount_clone_fg "$T/src" "$T/dest" "$T/meta" "$T/m" \
	"prefetch=$T/boot.profile,hydration_rate=2M,hydration_batch_size=1,no_read_hints"
timeout 20 "$CLONEFS" wait --prefetch "$T/m" > "$T/wait.out" || die "wait --prefetch failed"
grep -q "100.0% prefetched (7/7 regions)" "$T/wait.out" || die "wait said: $(cat "$T/wait.out")"
[ "$(json_field "$T/m" prefetch_regions)" = 7 ] || die "prefetch_regions"
[ "$(json_field "$T/m" prefetch_hydrated)" = 7 ] || die "prefetch_hydrated"
[ "$(json_field "$T/m" prefetch_done)" = True ] || die "prefetch_done"
unmount_clone "$T/m" "$T/meta"
python3 "$TOP/tests/integration/wlog_regions.py" "$T/wlog" 65536 > "$T/order"
python3 - "$T/order" <<'PY' || die "profile not copied first, in order ($T/order)"
import sys
order = [int(l) for l in open(sys.argv[1])]
assert len(order) == len(set(order)), "a region was written twice"
prof = [900, 901, 902, 100, 50, 600, 601]
got = [r for r in order if r in prof]
assert got == prof, f"profile regions copied in order {got}"
before = order[:order.index(601)]
swept = [r for r in before if r not in prof]
assert swept == list(range(len(swept))) and len(swept) < 40, f"swept first: {swept}"
PY
regions_equal "$T/src" "$T/dest" "$T/order" 65536 || die "copied regions differ from SOURCE"

# 3. Refused, touching nothing: corrupt, truncated, another image's.
rm -f "$T/dest" "$T/meta"
refused() { # refused WHY PROFILE
	if "$MOUNT_CLONEFS" "$T/src" "$T/dest" "$T/meta" "$T/m" -o prefetch="$2" 2> "$T/err"; then
		umount "$T/m"; die "mounted with $2"
	fi
	grep -q "profile $2: .*$1" "$T/err" || die "error for $2: $(cat "$T/err")"
	[ ! -e "$T/dest" ] && [ ! -e "$T/meta" ] || die "refused mount created files"
}
cp "$T/boot.profile" "$T/bad.profile"
printf '\x01' | dd of="$T/bad.profile" bs=1 seek=70 conv=notrunc status=none
refused "bad checksum" "$T/bad.profile"
head -c 100 "$T/boot.profile" > "$T/short.profile"
refused "truncated or corrupt" "$T/short.profile"
head -c 200 "$T/src" > "$T/junk.profile"
refused "not a clonefs profile" "$T/junk.profile"
refused "too big for a clonefs profile" "$T/src"
refused "No such file" "$T/none.profile"
make_source "$T/src2" 32
mount_clone "$T/src2" "$T/dest2" "$T/meta2" "$T/m2" "no_hydration"
rd2() { dd if="$T/m2/image" of=/dev/null bs=64k skip="$1" count=1 iflag=direct status=none; }
rd2 10; rd2 3
"$CLONEFS" profile save "$T/m2" "$T/other.profile" > /dev/null
refused "recorded for an image of 33554432 bytes" "$T/other.profile"
# ... also at run time, by the tool and by the message
mount_clone "$T/src" "$T/dest" "$T/meta" "$T/m" "no_hydration"
if "$CLONEFS" profile load "$T/m" "$T/other.profile" 2> "$T/err"; then die "loaded a foreign profile"; fi
grep -q "another geometry" "$T/err" || die "profile load said: $(cat "$T/err")"
if message "$T/m" prefetch "$T/other.profile" 2>/dev/null; then die "message took a foreign profile"; fi
[ "$(json_field "$T/m" prefetch_regions)" = 0 ] || die "a refused profile is in force"
# 4. Merge, and load at run time: both profiles' regions (3 from m2's
# geometry cannot merge with ours; a second profile of ours can).
if "$CLONEFS" profile merge "$T/boot.profile" "$T/other.profile" > "$T/x" 2> "$T/err"; then
	die "merged profiles of two geometries"
fi
rd 7 2
"$CLONEFS" profile save "$T/m" "$T/p2.profile" > /dev/null # 7 8
"$CLONEFS" profile merge "$T/boot.profile" "$T/p2.profile" > "$T/merged.profile"
"$CLONEFS" profile show "$T/merged.profile" | tail -n +2 > "$T/show"
printf '900 3\n100 1\n50 1\n600 2\n7 2\n' | cmp - "$T/show" || die "merged: $(cat "$T/show")"
# a profile may name regions already hydrated: 900, by a whole-region write
dd if="$T/src" of="$T/m/image" bs=64k skip=900 seek=900 count=1 conv=notrunc,fsync status=none
"$CLONEFS" profile load "$T/m" "$T/merged.profile" | grep -q "prefetching 9 regions" ||
	die "profile load"
[ "$(json_field "$T/m" prefetch_regions)" = 9 ] || die "loaded profile not in force"
[ "$(json_field "$T/m" prefetch_hydrated)" = 1 ] || die "hydrated region not counted"
message "$T/m" enable_hydration
timeout 20 "$CLONEFS" wait --prefetch "$T/m" > /dev/null || die "wait --prefetch after load"
unmount_clone "$T/m" "$T/meta"
unmount_clone "$T/m2" "$T/meta2"

# 5. Crash mid-prefetch (SIGKILL), remount: nothing lost, prefetch resumes
# with what is left, and the copy completes.
python3 - "$T/big.profile" <<'PY'
import hashlib, struct, sys
runs = [(r, 1) for r in range(1023, 400, -3)] # 208 scattered regions, descending
hdr = b'CFSPROF1' + struct.pack('<IIIIQQQQQ', 1, 64, 65536, 0, 1024, 64 << 20,
                                len(runs), len(runs), 0)
body = hdr + b''.join(struct.pack('<QQ', f, n) for f, n in runs)
open(sys.argv[1], 'wb').write(body + hashlib.sha256(body).digest())
PY
"$CLONEFS" profile show "$T/big.profile" | grep -q "runs 208 profiled 208" || die "handmade profile"
rm -f "$T/dest" "$T/meta"
mount_clone_fg "$T/src" "$T/dest" "$T/meta" "$T/m" \
	"prefetch=$T/big.profile,hydration_rate=1M,hydration_batch_size=1,commit_period=100ms"
pf_at_least() { [ "$(json_field "$T/m" prefetch_hydrated)" -ge "$1" ]; }
poll 20 pf_at_least 10 || die "prefetch made no progress"
kill -9 "$DAEMON_PID"
reap "$DAEMON_PID" || true
_abort_fuse "$T/m"; umount -l "$T/m" 2>/dev/null || true
timeout 30 flock "$T/meta" true
mount_clone "$T/src" "$T/dest" "$T/meta" "$T/m" "prefetch=$T/big.profile,hydration_batch_size=1"
timeout 30 "$CLONEFS" wait --prefetch "$T/m" > /dev/null || die "prefetch did not resume"
[ "$(json_field "$T/m" prefetch_hydrated)" = 208 ] || die "prefetch_hydrated after remount"
poll 30 hydrated_all "$T/m" || die "hydration did not finish after remount"
unmount_clone "$T/m" "$T/meta"
cmp "$T/src" "$T/dest" || die "dest differs from source after crash and remount"
"$CLONEFS" check -n "$T/meta" > /dev/null || die "meta not clean"
pass
