#!/bin/bash
# Sparse-aware hydration (spec 3.5): holes and zero blocks of a 90%-sparse
# 1 GiB SOURCE stay holes in DEST, which allocates no more than SOURCE plus
# one region per data extent.
. "$(dirname "$0")/lib.sh"

python3 - "$T/src" <<'PY'
import os, random, sys
rng = random.Random(3)
size = 1 << 30
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
os.ftruncate(fd, size)
# 10% data in 1 MiB extents at random 1 MiB slots, plus all-zero data blocks
slots = rng.sample(range(size >> 20), (size >> 20) // 10)
for s in slots:
    os.pwrite(fd, rng.randbytes(1 << 20), s << 20)
for s in rng.sample(sorted(set(range(size >> 20)) - set(slots)), 16):
    os.pwrite(fd, bytes(1 << 20), s << 20)  # written zeros: allocated, not data
os.close(fd)
PY
extents=$(python3 - "$T/src" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY); size = os.fstat(fd).st_size
n, off = 0, 0
while off < size:
    try: d = os.lseek(fd, off, os.SEEK_DATA)
    except OSError: break
    h = os.lseek(fd, d, os.SEEK_HOLE); n += 1; off = h
print(n)
PY
)
mount_clone "$T/src" "$T/dest" "$T/meta" "$T/m"
poll 240 hydrated_all "$T/m" || die "hydration did not finish"
unmount_clone "$T/m" "$T/meta"
cmp "$T/src" "$T/dest" || die "dest differs from source"
src_alloc=$(( $(stat -c %b "$T/src") * 512 ))
dest_alloc=$(( $(stat -c %b "$T/dest") * 512 ))
limit=$((src_alloc + extents * 65536))
log "source allocates $src_alloc bytes in $extents extents; dest $dest_alloc (limit $limit)"
[ "$dest_alloc" -le "$limit" ] || die "dest allocates $dest_alloc > $limit"
# the written-zero megabytes are holes in DEST: DEST allocates less than SOURCE
[ "$dest_alloc" -lt "$src_alloc" ] || die "zero blocks were written to dest"
pass
