#!/bin/bash
# Buffered opens that may write bypass the image's page cache (FUSE
# direct_io, issue 7): their writes are copied twice, not three times.
# Read-only opens keep the cache and its readahead. Checked here: where the
# image's pages are (fincore), that a cached reader sees what an uncached
# open writes, that such an open can still be mapped shared, and that while
# it is mapped, a new open after hydration is not passed through (the kernel
# would refuse it with EIO: the map put the image in its cached mode).
. "$(dirname "$0")/lib.sh"

make_source "$T/src" 16
cp "$T/src" "$T/model"
mount_clone_fg "$T/src" "$T/dest" "$T/meta" "$T/m" "no_hydration,debug"

cat > "$T/check.py" <<'PY'
import mmap, os, subprocess, sys
img, model, hydrated = sys.argv[1], sys.argv[2], sys.argv[3]
M = 1 << 20

def fail(why):
    print("FAIL: " + why, file=sys.stderr)
    sys.exit(1)

def resident():
    """Bytes of the image in its own page cache (not DEST's or SOURCE's)."""
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output",
                          "RES", img], capture_output=True, text=True)
    if out.returncode:
        fail("fincore: " + out.stderr.strip())
    return int(out.stdout.split()[0])

mfd = os.open(model, os.O_RDWR)

def model_write(off, data):
    os.pwrite(mfd, data, off)

rw = os.open(img, os.O_RDWR)
data = os.urandom(M)  # whole 64 KiB regions: no copies
if os.pwrite(rw, data, 0) != M:
    fail("short buffered write")
model_write(0, data)
if os.pread(rw, M, 0) != data:
    fail("buffered write does not read back")
n = resident()
if n:
    fail("a read-write open cached %d bytes of the image" % n)
print("# 1 MiB written and read back through a read-write open: nothing cached")

ro = os.open(img, os.O_RDONLY)
want = open(model, "rb").read()
if os.pread(ro, M, 4 * M) != want[4 * M:5 * M]:
    fail("read-only open reads wrong data")
n = resident()
if n < M:
    fail("a read-only open cached only %d bytes of the 1 MiB it read" % n)
print("# a read-only open cached %d bytes (readahead)" % n)

# a write through the uncached open drops the cached reader's pages
patch = b"\x5a" * 4096
os.pwrite(rw, patch, 4 * M + 4096)
model_write(4 * M + 4096, patch)
if os.pread(ro, 3 * 4096, 4 * M) != want[4 * M:4 * M + 4096] + patch + \
        want[4 * M + 8192:4 * M + 12288]:
    fail("the cached reader does not see the uncached open's write")
os.close(ro)
print("# the cached reader saw the write")

# a shared map of the uncached open
try:
    m = mmap.mmap(rw, 2 * M, mmap.MAP_SHARED, offset=8 * M)
except OSError as e:
    fail("mmap(MAP_SHARED) of a read-write open: %s" % e)
blob = os.urandom(8192)
m[M:M + 8192] = blob
m.flush()
model_write(9 * M, blob)
d = os.open(img, os.O_RDONLY | os.O_DIRECT)
buf = mmap.mmap(-1, 8192)
os.preadv(d, [buf], 9 * M)
os.close(d)
if buf[:] != blob:
    fail("the shared map's write did not reach the daemon")
print("# written through a shared map, read back O_DIRECT")

# the test hydrates the image with the map held, then says so
print("mapped", flush=True)
with open(hydrated) as f:
    f.read()
want = open(model, "rb").read()
try:
    with open(img, "rb") as f:
        got = f.read()
except OSError as e:
    fail("open after hydration, a shared map held: %s" % e)
if got != want:
    fail("image differs from the model after hydration")
m.close()
os.close(rw)
print("# hydrated with the map held; a new open read the whole image")
PY
mkfifo "$T/hydrated"
python3 "$T/check.py" "$T/m/image" "$T/model" "$T/hydrated" > "$T/check.out" &
checker=$!
_pids+=("$checker")
mapped() { grep -q mapped "$T/check.out" || ! kill -0 "$checker" 2>/dev/null; }
poll 30 mapped || die "the checks did not reach the shared map"
grep -q mapped "$T/check.out" || { reap "$checker" || true; cat "$T/check.out"; die "see above"; }
message "$T/m" enable_hydration
poll 60 hydrated_all "$T/m" || die "hydration did not finish"
echo > "$T/hydrated"
reap "$checker" || { cat "$T/check.out"; die "see above"; }
grep "^#" "$T/check.out"
grep -q "pass through" "$T/daemon.log" &&
	die "passed through while a shared map was held"

# alone, a new open passes through (Linux >= 6.9, and the daemon says so)
cmp "$T/m/image" "$T/model" || die "image differs from the model"
if has_passthrough; then
	grep -q "pass through" "$T/daemon.log" ||
		die "a lone open after hydration was not passed through"
fi
unmount_clone "$T/m" "$T/meta"
cmp "$T/dest" "$T/model" || die "dest differs from the model"
pass
