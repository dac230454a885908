#!/bin/bash
# qemu's tools on the image (spec 2.7): qemu-img compare finds a fresh clone
# identical to SOURCE; a qcow2 SOURCE cloned through clonefs passes
# qemu-img check and compares equal; guest writes through qemu-io with
# cache=none (O_DIRECT, thread pool and linux-aio) and dd with O_DIRECT read
# back right, survive a remount, and end up in DEST.
. "$(dirname "$0")/lib.sh"

K=1024
M=$((1024 * 1024))

# qio ARGS...: qemu-io, which must succeed with no failed command
qio() {
	local out
	out=$(qemu-io "$@" 2>&1) || die "qemu-io $*: $out"
	case $out in *[Ff]ailed*|*rror*) die "qemu-io $*: $out" ;; esac
}

# same FMT A B: qemu-img compare says identical (exit 0); -T none: O_DIRECT
same() {
	local out
	out=$(qemu-img compare -T none -f "$1" -F "$1" "$2" "$3" 2>&1) ||
		die "qemu-img compare $2 $3: $out"
	log "compare $(basename "$2") $(basename "$3"): $out"
}

check_qcow2() { # check_qcow2 FILE: qemu-img check finds nothing wrong
	local out
	out=$(qemu-img check -f qcow2 "$1" 2>&1) || die "qemu-img check $1: $out"
	case $out in *"No errors were found"*) ;; *) die "qemu-img check $1: $out" ;; esac
}

log "raw source"
make_source "$T/src" 32
cp "$T/src" "$T/model"
mount_clone "$T/src" "$T/dest" "$T/meta" "$T/m" "no_hydration"
same raw "$T/src" "$T/m/image"
# cache=none opens with O_DIRECT (qemu refuses to run without it); the
# unaligned requests make qemu read-modify-write aligned blocks itself
writes=(-c "write -P 0x5a $M $((64 * K))"
	-c "write -P 0xa5 $((5 * M + 4 * K)) $((8 * K))"
	-c "write -P 0x11 1000 3000"
	-c "write -z $((9 * M + 512)) $((100 * K))"
	-c "write -P 0x22 $((32 * M - 4 * K)) $((4 * K))")
qio -f raw -t none "${writes[@]}" "$T/m/image"
qio -f raw "${writes[@]}" "$T/model"
qio -f raw -t none -c "read -P 0x5a $M $((64 * K))" -c "read -P 0x11 1000 3000" \
	-c "read -P 0 $((9 * M + 512)) $((100 * K))" "$T/m/image"
qio -f raw -t none -k -c "write -P 0x33 $((20 * M)) $((256 * K))" \
	-c "read -P 0x33 $((20 * M)) $((256 * K))" "$T/m/image"
qio -f raw -c "write -P 0x33 $((20 * M)) $((256 * K))" "$T/model"
cmp "$T/m/image" "$T/model" || die "image differs from the model after qemu-io"
# the first change, at byte 1000, is in sector 1
out=$(qemu-img compare -f raw -F raw "$T/src" "$T/m/image" 2>&1) && die "compare missed the writes"
case $out in *"mismatch at offset 512!"*) ;; *) die "compare of changed clone: $out" ;; esac
# dd with O_DIRECT, aligned: a partial-region write and whole-image reads
head -c $((12 * K)) /dev/urandom > "$T/chunk"
dd if="$T/chunk" of="$T/m/image" bs=4k seek=$((3 * 256 + 5)) oflag=direct conv=notrunc status=none
dd if="$T/chunk" of="$T/model" bs=4k seek=$((3 * 256 + 5)) conv=notrunc status=none
dd if="$T/m/image" bs=1M iflag=direct status=none | cmp - "$T/model" ||
	die "O_DIRECT read differs from the model"
qemu-img convert -T none -f raw -O raw "$T/m/image" "$T/copy.raw"
cmp "$T/copy.raw" "$T/model" || die "qemu-img convert -T none copy differs"
unmount_clone "$T/m" "$T/meta"
mount_clone "$T/src" "$T/dest" "$T/meta" "$T/m"
same raw "$T/model" "$T/m/image"
poll 60 hydrated_all "$T/m" || die "hydration did not finish"
unmount_clone "$T/m" "$T/meta"
cmp "$T/dest" "$T/model" || die "dest differs from the model"

log "qcow2 source"
# A qcow2 with data, zeros and holes, its clusters preallocated: the clone
# is a fixed-size file, so guest writes must land inside it.
head -c $((6 * M)) /dev/urandom > "$T/data.raw"
truncate -s $((24 * M)) "$T/data.raw"
qemu-img convert -q -f raw -O qcow2 -o preallocation=metadata,cluster_size=65536 \
	"$T/data.raw" "$T/src.qcow2"
qio -f qcow2 -c "write -P 0x44 $((10 * M)) $((3 * M))" -c "write -z $((M)) $((512 * K))" \
	"$T/src.qcow2"
check_qcow2 "$T/src.qcow2"
cp "$T/src.qcow2" "$T/model.qcow2"
rm -f "$T/dest" "$T/meta"
# background hydration runs, slowly, under everything below
mount_clone "$T/src.qcow2" "$T/dest" "$T/meta" "$T/m" "hydration_rate=2M,region_size=4k"
check_qcow2 "$T/m/image"
same qcow2 "$T/src.qcow2" "$T/m/image"
cmp "$T/src.qcow2" "$T/m/image" || die "qcow2 clone differs from its source"
gwrites=(-c "write -P 0x66 $((2 * M + 3 * K)) $((200 * K))"
	-c "write -P 0x67 $((17 * M)) $((M))"
	-c "write -z $((11 * M)) $((64 * K))"
	-c "write -P 0x68 $((24 * M - 512)) 512")
qio -f qcow2 -t none "${gwrites[@]}" "$T/m/image"
qio -f qcow2 "${gwrites[@]}" "$T/model.qcow2"
qio -f qcow2 -t none -k -c "read -P 0x66 $((2 * M + 3 * K)) $((200 * K))" \
	-c "read -P 0x44 $((12 * M)) $M" -c "read -P 0 $((11 * M)) $((64 * K))" "$T/m/image"
hydrated_all "$T/m" && die "hydration finished before the guest writes: no overlap"
check_qcow2 "$T/m/image"
same qcow2 "$T/model.qcow2" "$T/m/image"
out=$(qemu-img compare -f qcow2 -F qcow2 "$T/src.qcow2" "$T/m/image" 2>&1) &&
	die "compare missed the guest writes"
unmount_clone "$T/m" "$T/meta"
mount_clone "$T/src.qcow2" "$T/dest" "$T/meta" "$T/m" "region_size=4k"
check_qcow2 "$T/m/image"
same qcow2 "$T/model.qcow2" "$T/m/image"
poll 60 hydrated_all "$T/m" || die "hydration did not finish"
unmount_clone "$T/m" "$T/meta"
check_qcow2 "$T/dest"
same qcow2 "$T/model.qcow2" "$T/dest"
pass
