#!/bin/bash
# 64-bit arithmetic (spec 6.5, 6.6): a 17 TiB sparse SOURCE at 4 KiB regions
# has more than 2^32 regions; I/O near region 2^32 and at the far end follows
# the rules, counts do not wrap, and it all survives a remount.
. "$(dirname "$0")/lib.sh"

# tmpfs takes sparse files beyond ext4's 16 TiB limit.
mkdir -p "$T/fs"
mount -t tmpfs -o size=4G tmpfs "$T/fs"
atexit umount -l "$T/fs"
S=$T/fs/src D=$T/fs/dest M=$T/fs/meta
truncate -s 17T "$S"
size=$(stat -c %s "$S")
r32=$((1 << 32))
# SOURCE data around region 2^32 and at the very end
python3 - "$S" $((r32 * 4096 - 4096)) $((size - 8192)) <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
for off in map(int, sys.argv[2:]):
    os.pwrite(fd, (b"SRC-%016x-" % off) * 64, off)
PY
mount_clone "$S" "$D" "$M" "$T/m" "region_size=4k,no_hydration"
total=$(status_field "$T/m" 4); total=${total#*/}
[ "$total" = $(((size + 4095) / 4096)) ] || die "region count $total"
[ "$total" -gt "$r32" ] || die "not beyond 2^32 regions"
python3 - "$T/m/image" $((r32 * 4096 - 4096)) $((size - 8192)) <<'PY'
import os, sys
img = os.open(sys.argv[1], os.O_RDWR)
for off in map(int, sys.argv[2:]):
    want = (b"SRC-%016x-" % off) * 64
    assert os.pread(img, len(want), off) == want, "source data at %d" % off
    # a partial write in the region after: hydrates it; a whole-region write
    os.pwrite(img, b"partial", off + 4096 + 100)
    if off + 4096 * 3 <= os.fstat(img).st_size:
        os.pwrite(img, b"W" * 4096, off + 4096 * 2)
    assert os.pread(img, 7, off + 4096 + 100) == b"partial"
os.fsync(img)
PY
h=$(hydrated_count "$T/m")
[ "$h" = 3 ] || die "hydrated count $h, expected 3"
unmount_clone "$T/m" "$M"
mount_clone "$S" "$D" "$M" "$T/m" "region_size=4k,no_hydration"
[ "$(hydrated_count "$T/m")" = "$h" ] || die "count after remount: $(hydrated_count "$T/m")"
python3 - "$T/m/image" $((r32 * 4096 - 4096)) $((size - 8192)) <<'PY'
import os, sys
img = os.open(sys.argv[1], os.O_RDONLY)
for off in map(int, sys.argv[2:]):
    assert os.pread(img, 7, off + 4096 + 100) == b"partial", "lost write at %d" % off
    assert os.pread(img, 100, off + 4096) == bytes(100), "hydrated region not source"
PY
unmount_clone "$T/m" "$M"
pass
