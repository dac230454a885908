#!/bin/bash
# Reads as hints (spec 3.9): a read of unhydrated regions moves them and a
# read-ahead window to the head of the hydration queue, ahead of the
# ascending sweep, without making the reader wait; nothing is copied twice.
# timeout: 60
. "$(dirname "$0")/lib.sh"

make_source "$T/src" 64 # 1024 regions of 64 KiB

# 1. Order of copies, from the write log: the sweep crawls (4 MiB/s, a
# region per copy); a read at region 800 has 800.. copied long before the
# sweep could get there, and every region is written once.
CLONEFS_WRITELOG=$T/wlog mount_clone_fg "$T/src" "$T/dest" "$T/meta" "$T/m" \
	"hydration_rate=4M,hydration_batch_size=1"
[ "$(json_field "$T/m" read_hints)" = True ] || die "read_hints is not on by default"
dd if="$T/m/image" of="$T/read" bs=64k skip=800 count=4 iflag=direct status=none
cmp -n $((4 * 65536)) -i $((800 * 65536)):0 "$T/src" "$T/read" || die "read returned wrong data"
hints_at_least() { [ "$(json_field "$T/m" hint_regions)" -ge "$1" ]; }
# 4 sequential reads: 800 starts a stream; 801, 802, 803 continue it, with
# windows of 4, 8 and 16 regions after them: 800..819 in all
poll 20 hints_at_least 20 || die "hinted regions were not copied"
[ "$(json_field "$T/m" hint_copies)" -ge 20 ] || die "hint_copies not counted per copy"
unmount_clone "$T/m" "$T/meta"
python3 "$TOP/tests/integration/wlog_regions.py" "$T/wlog" 65536 > "$T/order"
python3 - "$T/order" <<'PY' || die "hinted regions were not copied first (order in $T/order)"
import sys
order = [int(l) for l in open(sys.argv[1])]
assert len(order) == len(set(order)), "a region was written twice"
pos = {r: i for i, r in enumerate(order)}
hinted = range(800, 820)
assert all(r in pos for r in hinted), "hinted regions missing"
last_hint = max(pos[r] for r in hinted)
swept = [r for r in order[:last_hint] if r < 800]
# the sweep went on from 0, in order, and was far from 800
assert swept == list(range(len(swept))), "the sweep's order changed"
assert len(swept) < 400, f"the sweep copied {len(swept)} regions first"
print(f"hinted 800..819 done after {len(swept)} swept regions")
PY
regions_equal "$T/src" "$T/dest" "$T/order" 65536 || die "copied regions differ from SOURCE"

# 2. Readers never wait for hinted copies: at 1 byte/s after the first
# copy, no hinted copy ever runs, yet reads of unhydrated regions all
# complete, from SOURCE, at once.
rm -f "$T/dest" "$T/meta"
mount_clone "$T/src" "$T/dest" "$T/meta" "$T/m" "hydration_rate=1,hydration_batch_size=1"
timeout 20 dd if="$T/m/image" of="$T/read" bs=64k skip=500 count=64 iflag=direct status=none ||
	die "reads of hinted regions did not complete"
cmp -n $((64 * 65536)) -i $((500 * 65536)):0 "$T/src" "$T/read" || die "read returned wrong data"
[ "$(hydrated_count "$T/m")" -le 1 ] || die "copies ran despite the rate limit"

# 3. read_hints off at run time: reads hint nothing.
message "$T/m" read_hints off
[ "$(json_field "$T/m" read_hints)" = False ] || die "read_hints still on"
dd if="$T/m/image" of=/dev/null bs=64k skip=700 count=8 iflag=direct status=none
message "$T/m" hydration_rate 0
poll 30 hydrated_all "$T/m" || die "hydration did not finish"
[ "$(json_field "$T/m" hint_copies)" = 0 ] || die "hints copied with read_hints off"
unmount_clone "$T/m" "$T/meta"
cmp "$T/src" "$T/dest" || die "dest differs from source"
pass
