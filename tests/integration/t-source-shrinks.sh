#!/bin/bash
# A SOURCE that shrinks under the mount (issue 22 item 7; spec 1.4, 3.1):
# what it lost is an I/O error, never zeros. Through the mounted image:
# reads of lost regions (O_DIRECT small and spliced, buffered, across the
# cut) fail with EIO, each counted in status (read_errors, last_error),
# while what SOURCE still holds and hydrated regions read as before; a
# partial write into a lost region fails with EIO and
# marks nothing; background copies of lost regions fail, are counted in
# status and never mark a region (the cut one included). With SOURCE put
# back, a remount reads it all right: no lost region went to DEST as zeros.
. "$(dirname "$0")/lib.sh"

R=65536
make_source "$T/src" 4 # 64 regions
cp "$T/src" "$T/src.orig"
CUT=$((17 * R + 10000)) # regions 0-16 whole, 17 cut, 18-63 gone

mount_clone "$T/src" "$T/dest" "$T/meta" "$T/m" "no_hydration"
printf 'w' | dd of="$T/m/image" bs=1 seek=$((2 * R + 100)) conv=notrunc status=none
[ "$(hydrated_count "$T/m")" = 1 ] || die "the partial write did not hydrate region 2"
truncate -s "$CUT" "$T/src"

python3 - "$T/m/image" "$T/src.orig" "$R" "$CUT" <<'PY' || die "I/O over the lost part of SOURCE"
import errno, mmap, os, sys

img, orig, R, CUT = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
with open(orig, "rb") as f:
    model = bytearray(f.read())
model[2 * R + 100] = ord("w")
fails = []

def aligned(n):
    return mmap.mmap(-1, n)

def read(fd, off, n):
    """(errno, data)"""
    buf = aligned(n)
    try:
        got = os.preadv(fd, [buf], off)
        return 0, bytes(buf[:got])
    except OSError as e:
        return e.errno, None

def expect_eio(what, fd, off, n):
    err, _ = read(fd, off, n)
    if err != errno.EIO:
        fails.append("%s: %s, want EIO" % (what, errno.errorcode.get(err, "success")))

def expect_data(what, fd, off, n):
    err, got = read(fd, off, n)
    if err or got != bytes(model[off:off + n]):
        fails.append("%s: %s" % (what, errno.errorcode[err] if err else "wrong data"))

d = os.open(img, os.O_RDONLY | os.O_DIRECT)
expect_eio("O_DIRECT 4 KiB read of a lost region", d, 40 * R, 4096)
expect_eio("O_DIRECT 128 KiB read of lost regions", d, 40 * R, 128 << 10)
expect_eio("O_DIRECT read across the cut", d, 17 * R, R)
expect_eio("O_DIRECT read of the last region", d, 63 * R, R)
expect_data("O_DIRECT read inside what SOURCE still holds", d, 17 * R, 8192)
expect_data("O_DIRECT read of intact regions", d, 0, 16 * R)
expect_data("O_DIRECT read of hydrated region 2", d, 2 * R, R)
os.close(d)

b = os.open(img, os.O_RDONLY)
expect_eio("buffered read of a lost region", b, 30 * R, 4096)
expect_data("buffered read of an intact region", b, 16 * R, 4096)
os.close(b)

for f in fails:
    print("FAIL:", f)
sys.exit(1 if fails else 0)
PY
# each failed read is counted and said (with hydration off: no copy did)
[ "$(json_field "$T/m" read_errors)" -ge 5 ] || die "read_errors: $(json_field "$T/m" read_errors), want >= 5"
[ "$(json_field "$T/m" copy_errors)" = 0 ] || die "copy_errors $(json_field "$T/m" copy_errors) before any copy"
json_field "$T/m" last_error | grep -q "read of bytes .* shorter than the image" ||
	die "last_error after the reads: $(json_field "$T/m" last_error)"

python3 - "$T/m/image" "$R" <<'PY' || die "a partial write into a lost region"
import errno, os, sys
R = int(sys.argv[2])
fails = []
w = os.open(sys.argv[1], os.O_RDWR)
try:
    os.pwrite(w, b"x" * 100, 40 * R + 1000)
    fails.append("partial write into a lost region succeeded, want EIO")
except OSError as e:
    if e.errno != errno.EIO:
        fails.append("partial write into a lost region: %s, want EIO" % errno.errorcode[e.errno])
os.close(w)

for f in fails:
    print("FAIL:", f)
sys.exit(1 if fails else 0)
PY
[ "$(hydrated_count "$T/m")" = 1 ] || die "a failed write marked a region: $(hydrated_count "$T/m") hydrated"
errors=$(json_field "$T/m" copy_errors)
[ "$errors" -ge 1 ] || die "the failed copy of the partial write is not counted ($errors)"
json_field "$T/m" last_error | grep -q "shorter than the image" ||
	die "last_error: $(json_field "$T/m" last_error)"

# background copies: regions 0-16 hydrate, the others fail and are retried
message "$T/m" enable_hydration
errors_beyond() { [ "$(json_field "$T/m" copy_errors)" -ge "$1" ]; }
poll 30 hydrated_at_least "$T/m" 17 || die "intact regions did not hydrate: $(hydrated_count "$T/m")"
poll 30 errors_beyond $((errors + 2)) || die "background copy errors not counted"
[ "$(hydrated_count "$T/m")" = 17 ] || die "$(hydrated_count "$T/m") regions hydrated, want the 17 intact"
[ "$(json_field "$T/m" hydration_done)" = False ] || die "hydration done with SOURCE cut short"
[ "$(json_field "$T/m" mode)" = rw ] || die "mode $(json_field "$T/m" mode)"
dd if="$T/m/image" of=/dev/null bs=4096 skip=$((40 * R / 4096)) count=1 iflag=direct status=none 2>/dev/null &&
	die "a lost region reads after the background copies"
message "$T/m" disable_hydration
unmount_clone "$T/m" "$T/meta"

# SOURCE back as it was: the image is SOURCE but for the write, and only
# the intact regions were committed hydrated
cp "$T/src.orig" "$T/src"
printf 'w' | dd of="$T/src.orig" bs=1 seek=$((2 * R + 100)) conv=notrunc status=none
mount_clone "$T/src" "$T/dest" "$T/meta" "$T/m" "no_hydration"
[ "$(hydrated_count "$T/m")" = 17 ] || die "after remount: $(hydrated_count "$T/m") hydrated, want 17"
cmp "$T/m/image" "$T/src.orig" || die "after remount the image is not SOURCE (lost regions zeroed?)"
unmount_clone "$T/m" "$T/meta"
pass
