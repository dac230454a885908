#!/bin/bash
# A qcow2 golden image served by qemu-nbd (read-only, unix socket) as SOURCE
# (issue 24): the image reads as `qemu-img convert` of the qcow2 before and
# after hydration, and DEST ends equal to it. qemu-nbd takes one client
# unless --shared says more: clonefs opens several connections.
# timeout: 120
. "$(dirname "$0")/lib.sh"

# 20 MiB + an odd tail of data with holes, as qcow2 (holes unallocated)
python3 - "$T/golden.raw" <<'PY'
import os, random, sys
rng = random.Random(24)
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
os.ftruncate(fd, (20 << 20) + 7680)
for s in rng.sample(range(20), 12):
    os.pwrite(fd, rng.randbytes(1 << 20), s << 20)
os.pwrite(fd, rng.randbytes(7680), 20 << 20)
os.close(fd)
PY
qemu-img convert -q -f raw -O qcow2 "$T/golden.raw" "$T/golden.qcow2"
qemu-img convert -q -f qcow2 -O raw "$T/golden.qcow2" "$T/ref.raw"
cmp "$T/golden.raw" "$T/ref.raw" || die "qemu-img round trip differs"

sock=$T/qemu.sock
qemu-nbd -r -f qcow2 -k "$sock" --shared=16 --persistent --pid-file="$T/qemu.pid" \
	"$T/golden.qcow2" 2>"$T/qemu-nbd.log" &
_pids+=("$!")
# the pid file is written once it listens
poll 10 test -s "$T/qemu.pid" || die "qemu-nbd did not come up"
uri="nbd+unix:///?socket=$sock"

mount_clone "$uri" "$T/dest" "$T/meta" "$T/m" no_hydration
[ "$(stat -c %s "$T/m/image")" = "$(stat -c %s "$T/ref.raw")" ] || die "image size is not the qcow2's virtual size"
cmp "$T/ref.raw" "$T/m/image" || die "unhydrated image differs from qemu-img convert"
log "multi-conn: $(source_json "$T/m" multi_conn)"
message "$T/m" enable_hydration
poll 60 hydrated_all "$T/m" || die "hydration did not finish"
cmp "$T/ref.raw" "$T/m/image" || die "hydrated image differs from qemu-img convert"
log "skipped as holes: $(source_json "$T/m" zero_bytes) bytes, $(source_json "$T/m" connections) connections"
unmount_clone "$T/m" "$T/meta"
cmp "$T/ref.raw" "$T/dest" || die "dest differs from qemu-img convert"
pass
