#!/bin/bash
# Bad I/O on the image fails with the errno a block device (or a fixed-size
# file) gives, and changes nothing (spec 2.8): reads past the end are empty
# or short, writes past the end fail with ENOSPC and straddling ones are
# short, size changes and chmod/chown fail with EPERM, and a `-o ro` mount
# refuses writes with EROFS leaving DEST and META byte-identical.
. "$(dirname "$0")/lib.sh"

# 4 MiB + 12 KiB: the last 64 KiB region is short, the end is 4 KiB aligned
# (so O_DIRECT writes can aim exactly at it).
make_source "$T/src" 4
head -c 12288 /dev/urandom >> "$T/src"
size=$(stat -c %s "$T/src")
cp "$T/src" "$T/model"

mount_clone "$T/src" "$T/dest" "$T/meta" "$T/m" "no_hydration"
python3 - "$T/m/image" "$T/model" <<'PY'
import ctypes, errno, mmap, os, sys

img, model = sys.argv[1], sys.argv[2]
libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
KEEP_SIZE, PUNCH_HOLE, COLLAPSE_RANGE, ZERO_RANGE, INSERT_RANGE = 1, 2, 8, 16, 32
size = os.stat(model).st_size
fails = []

def expect_err(what, want, fn, *args):
    try:
        r = fn(*args)
    except OSError as e:
        if e.errno != want:
            fails.append(f"{what}: {errno.errorcode[e.errno]}, want {errno.errorcode[want]}")
        return
    fails.append(f"{what}: succeeded ({r!r}), want {errno.errorcode[want]}")

def expect_eq(what, got, want):
    if got != want:
        fails.append(f"{what}: got {got!r}, want {want!r}")

def falloc(fd, mode, off, length):
    if libc.fallocate(fd, mode, off, length):
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return 0

def sizes_unchanged(what):
    expect_eq(what + ": fstat size", os.fstat(fd).st_size, size)
    expect_eq(what + ": stat size", os.stat(img).st_size, size)

fd = os.open(img, os.O_RDWR)
expect_eq("image size", os.fstat(fd).st_size, size)
src_tail = open(model, "rb").read()[size - 100:]

# reads: empty at and past the end, short across it
expect_eq("read at end", os.pread(fd, 4096, size), b"")
expect_eq("read 1 MiB past end", os.pread(fd, 4096, size + (1 << 20)), b"")
expect_eq("read across end", os.pread(fd, 4096, size - 100), src_tail)

# writes at or past the end: ENOSPC, like a device; the size stays
for off in (size, size + 1, size + (1 << 20), 1 << 50):
    expect_err(f"write at {off}", errno.ENOSPC, os.pwrite, fd, b"x" * 4096, off)
sizes_unchanged("after writes past the end")
os.fsync(fd)  # nothing refused may linger in a cache and fail here
sizes_unchanged("after fsync")

# O_DIRECT: the same answers
dfd = os.open(img, os.O_RDWR | os.O_DIRECT)
buf = mmap.mmap(-1, 8192)
buf.write(b"d" * 8192)
expect_err("O_DIRECT write at end", errno.ENOSPC, os.pwrite, dfd, buf, size)
rbuf = mmap.mmap(-1, 8192)
expect_eq("O_DIRECT read at end", os.preadv(dfd, [rbuf], size), 0)
expect_eq("O_DIRECT read across end", os.preadv(dfd, [rbuf], size - 4096), 4096)
# (the kernel would report a short O_DIRECT write as EIO: refused whole)
expect_err("O_DIRECT write across end", errno.ENOSPC, os.pwrite, dfd, buf, size - 4096)
expect_eq("O_DIRECT write inside", os.pwrite(dfd, buf, size - 8192), 8192)
sizes_unchanged("after O_DIRECT")
os.close(dfd)

# truncation to any other size: EPERM; to the same size: a no-op
for new in (size + 4096, size - 4096, 0, size + (1 << 30)):
    expect_err(f"ftruncate to {new}", errno.EPERM, os.ftruncate, fd, new)
    expect_err(f"truncate to {new}", errno.EPERM, os.truncate, img, new)
os.ftruncate(fd, size)
expect_err("open with O_TRUNC", errno.EPERM, os.open, img, os.O_WRONLY | os.O_TRUNC)
sizes_unchanged("after truncates")

# mode and owner are fixed
mode = os.stat(img).st_mode & 0o7777
expect_err("chmod 0644", errno.EPERM, os.chmod, img, 0o644)
expect_err("chmod 0777", errno.EPERM, os.chmod, img, 0o777)
expect_err("chown 1:1", errno.EPERM, os.chown, img, 1, 1)
expect_err("chown 0:1", errno.EPERM, os.chown, img, os.getuid(), 1)
expect_eq("mode", os.stat(img).st_mode & 0o7777, mode)
expect_eq("owner", (os.stat(img).st_uid, os.stat(img).st_gid), (os.getuid(), os.getgid()))

# fallocate that would grow the image: EPERM; size-preserving is fine
expect_err("fallocate past end", errno.EPERM, falloc, fd, 0, size, 4096)
expect_err("fallocate across end", errno.EPERM, falloc, fd, 0, size - 4096, 8192)
expect_err("posix_fallocate across end", errno.EPERM, os.posix_fallocate, fd, size - 10, 100)
expect_err("fallocate collapse", errno.EOPNOTSUPP, falloc, fd, COLLAPSE_RANGE, 0, 65536)
expect_err("fallocate insert", errno.EOPNOTSUPP, falloc, fd, INSERT_RANGE, 0, 65536)
expect_err("fallocate negative length", errno.EINVAL, falloc, fd, PUNCH_HOLE | KEEP_SIZE, 0, -1)
falloc(fd, 0, 0, 65536)                      # inside: every byte exists already
falloc(fd, KEEP_SIZE, size - 4096, 1 << 20)  # keep-size past the end: allowed
falloc(fd, KEEP_SIZE | PUNCH_HOLE, size, 65536)  # nothing there to punch
sizes_unchanged("after fallocate")

# a write straddling the end is short; only the part inside lands
expect_eq("write across end", os.pwrite(fd, b"y" * 4096, size - 100), 100)
sizes_unchanged("after the straddling write")
expect_eq("straddled bytes", os.pread(fd, 4096, size - 100), b"y" * 100)
os.fsync(fd)
os.close(fd)
with open(model, "r+b") as f:
    f.seek(size - 8192)
    f.write(b"d" * 8092 + b"y" * 100)
if fails:
    sys.exit("FAIL: " + "\n      ".join(fails))
PY
# truncate(1) and chmod(1) say so too
out=$(truncate -s 1M "$T/m/image" 2>&1) && die "truncate -s 1M succeeded"
log "truncate: $out"
case $out in *"Operation not permitted"*) ;; *) die "truncate: $out" ;; esac
[ "$(stat -c %s "$T/m/image")" = "$size" ] || die "size changed"
chmod 644 "$T/m/image" 2>/dev/null && die "chmod succeeded"
cmp "$T/m/image" "$T/model" || die "image differs from the model after refused I/O"
[ "$(hydrated_count "$T/m")" = 1 ] || die "refused I/O hydrated regions: $(status_field "$T/m" 4)"
unmount_clone "$T/m" "$T/meta"
[ "$(stat -c %s "$T/dest")" = "$size" ] || die "dest size changed"

# -o ro: opening for write is refused with EROFS and nothing is written
sum() { sha256sum "$T/dest" "$T/meta"; }
before=$(sum)
mount_clone "$T/src" "$T/dest" "$T/meta" "$T/m" "ro"
python3 - "$T/m/image" <<'PY'
import ctypes, errno, os, sys

img = sys.argv[1]
fails = []

def expect_err(what, want, fn, *args):
    try:
        fn(*args)
    except OSError as e:
        if e.errno != want:
            fails.append(f"{what}: {errno.errorcode[e.errno]}, want {errno.errorcode[want]}")
        return
    fails.append(f"{what}: succeeded, want {errno.errorcode[want]}")

size = os.stat(img).st_size
expect_err("open O_RDWR", errno.EROFS, os.open, img, os.O_RDWR)
expect_err("open O_WRONLY", errno.EROFS, os.open, img, os.O_WRONLY)
expect_err("open O_RDWR|O_DIRECT", errno.EROFS, os.open, img, os.O_RDWR | os.O_DIRECT)
expect_err("truncate", errno.EROFS, os.truncate, img, 4096)
expect_err("chmod", errno.EROFS, os.chmod, img, 0o600)
fd = os.open(img, os.O_RDONLY)
expect_err("write on a read-only fd", errno.EBADF, os.pwrite, fd, b"x", 0)
os.pread(fd, 1 << 20, 0)
os.close(fd)
if os.stat(img).st_size != size:
    fails.append("size changed")
if fails:
    sys.exit("FAIL: " + "\n      ".join(fails))
PY
cmp "$T/m/image" "$T/model" || die "read-only image differs from the model"
dd if=/dev/zero of="$T/m/image" bs=4k count=1 conv=notrunc status=none 2>/dev/null &&
	die "dd wrote to a read-only image"
unmount_clone "$T/m" "$T/meta"
[ "$(sum)" = "$before" ] || die "dest or meta changed under -o ro"

# and the rw clone still holds exactly the model
mount_clone "$T/src" "$T/dest" "$T/meta" "$T/m" "no_hydration"
cmp "$T/m/image" "$T/model" || die "image differs from the model after remount"
unmount_clone "$T/m" "$T/meta"
pass
