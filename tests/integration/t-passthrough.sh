#!/bin/bash
# Once "every region hydrated" is committed, new read-only opens of the image
# pass through to DEST in the kernel (FUSE passthrough, Linux >= 6.9): their
# reads no longer visit the daemon, so they work while it is stopped. An
# open held from before completion keeps the image in the daemon's hands
# (the kernel refuses to mix the two: every open would fail with EIO).
# Writable opens never pass through (spec 2.8, issue 22 item 8): the kernel
# would acknowledge a passed-through write past the image end and grow DEST.
# While a reader is passed through, a writer is refused with ETXTBSY; one
# that opens as the last reader closes waits for its RELEASE instead; its
# write past the end fails with ENOSPC and DEST keeps the image size.
. "$(dirname "$0")/lib.sh"

make_source "$T/src" 16
cp "$T/src" "$T/model"
mount_clone_fg "$T/src" "$T/dest" "$T/meta" "$T/m" "no_hydration,debug"

# an open from before completion, with data already cached through it
exec 3<"$T/m/image"
head -c 1M <&3 > /dev/null
message "$T/m" enable_hydration
poll 60 hydrated_all "$T/m" || die "hydration did not finish"
cmp "$T/m/image" "$T/model" || die "image differs while an older open is held"
grep -q "pass through" "$T/daemon.log" &&
	die "passed through while an open from before completion was held"
exec 3<&-

if ! has_passthrough; then
	log "Linux $(uname -r) has no FUSE passthrough: only the daemon's path is checked"
	unmount_clone "$T/m" "$T/meta"
	cmp "$T/dest" "$T/model" || die "dest differs"
	pass
	exit 0
fi
# (an I/O that reached the stopped daemon would wait for it: SIGKILL ends it)
timeout -s KILL 30 python3 - "$T/m/image" "$T/model" "$T/dest" "$DAEMON_PID" <<'PY'
import errno, mmap, os, random, signal, sys, time

def stop(pid):
    """SIGSTOP, and wait until every thread has stopped: until then one may
    still take a request and answer it."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 10
    def stopped(tid):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] == "T"
        except FileNotFoundError:  # a thread that ended
            return True
    while not all(stopped(t) for t in os.listdir(f"/proc/{pid}/task")):
        if time.monotonic() > deadline:
            sys.exit("FAIL: the daemon did not stop")
        time.sleep(0.01)

img, model, dest, daemon = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
size = os.stat(model).st_size
fd = os.open(img, os.O_RDONLY)
mfd = os.open(model, os.O_RDWR)
rnd = random.Random(7)

stop(daemon)  # only the kernel can answer now
for i in range(200):
    off = rnd.randrange(size)
    n = min(rnd.randrange(1, 300000), size - off)
    if os.pread(fd, n, off) != os.pread(mfd, n, off):
        sys.exit(f"FAIL: passed-through read at {off} differs while the daemon is stopped")
if os.pread(fd, size + 4096, 0) != os.pread(mfd, size, 0):
    sys.exit("FAIL: image differs from the model while the daemon is stopped")
os.kill(daemon, signal.SIGCONT)
print("# 200 reads and a whole read with the daemon stopped")

try:
    os.close(os.open(img, os.O_RDWR))
    sys.exit("FAIL: a writable open beside a passed-through one was not refused")
except OSError as e:
    if e.errno != errno.ETXTBSY:
        sys.exit(f"FAIL: a writable open beside a passed-through one: {e}")
os.close(fd)

# close(2) returns before the kernel's RELEASE reaches the daemon; a writer
# that opens at once must not find the reader still counted (as cmp, then
# dd into the image, would): it waits for that RELEASE, never ETXTBSY
for i in range(300):
    r = os.open(img, os.O_RDONLY)
    os.pread(r, 4096, rnd.randrange(size))
    os.close(r)
    try:
        os.close(os.open(img, os.O_RDWR))
    except OSError as e:
        sys.exit(f"FAIL: a writer right after the last reader closed (round {i}): {e}")
print("# 300 writers opened right after a passed-through reader closed")

# writers go through the daemon: a write past the end is never acknowledged
wfd = os.open(img, os.O_RDWR)
dfd = os.open(img, os.O_RDWR | os.O_DIRECT)
data = os.urandom(100000)
os.pwrite(wfd, data, 12345)
os.pwrite(mfd, data, 12345)
buf = mmap.mmap(-1, 1 << 20)
buf.write(os.urandom(1 << 20))
os.pwrite(dfd, buf, size - (1 << 20))
os.pwrite(mfd, bytes(buf), size - (1 << 20))
for f, what in ((wfd, "buffered"), (dfd, "O_DIRECT")):
    try:
        n = os.pwrite(f, buf[:4096], size)
        sys.exit(f"FAIL: a {what} write past the end was acknowledged ({n} bytes)")
    except OSError as e:
        if e.errno != errno.ENOSPC:
            sys.exit(f"FAIL: a {what} write past the end: {e}")
if os.pwrite(wfd, b"y" * 8192, size - 4096) != 4096:
    sys.exit("FAIL: a write across the end was not cut at the end")
os.pwrite(mfd, b"y" * 4096, size - 4096)
os.fsync(wfd)
os.close(wfd)
os.close(dfd)
if os.stat(dest).st_size != size:
    sys.exit(f"FAIL: dest is {os.stat(dest).st_size} bytes, not {size}")
print("# writes through the daemon; past the end refused, dest keeps its size")
PY
rc=$?
kill -CONT "$DAEMON_PID"
[ $rc = 0 ] || die "passed-through I/O failed; daemon said: $(grep -i passthrough "$T/daemon.log")"
grep -q "pass through" "$T/daemon.log" || die "no pass-through logged"
unmount_clone "$T/m" "$T/meta"
cmp "$T/dest" "$T/model" || die "dest differs from the model"

# the same DEST mounts again, and reads back the same
mount_clone "$T/src" "$T/dest" "$T/meta" "$T/m"
cmp "$T/m/image" "$T/model" || die "image differs after remount"
unmount_clone "$T/m" "$T/meta"
pass
