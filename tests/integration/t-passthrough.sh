#!/bin/bash
# Once every region is hydrated, new opens of the image pass through to
# DEST in the kernel (FUSE passthrough, Linux >= 6.9): reads and writes no
# longer visit the daemon, so they work while it is stopped. An open held
# from before completion keeps the image in the daemon's hands (the kernel
# refuses to mix the two: every open would fail with EIO). A write past the
# end, which the kernel does not stop on a passed-through file, must not
# leave DEST bigger than the image (the next mount would refuse it).
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
import mmap, os, random, signal, sys, time

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
fd = os.open(img, os.O_RDWR)
dfd = os.open(img, os.O_RDWR | os.O_DIRECT)  # must not fail beside fd
mfd = os.open(model, os.O_RDWR)
rnd = random.Random(7)

# The kernel asks the daemon once per inode whether a write must drop
# security.capability; after that answer it never asks again.
os.pwrite(fd, os.pread(mfd, 4096, 0), 0)
stop(daemon)  # only the kernel can answer now
for i in range(200):
    off = rnd.randrange(size)
    data = os.urandom(min(rnd.randrange(1, 300000), size - off))
    os.pwrite(fd, data, off)
    os.pwrite(mfd, data, off)
buf = mmap.mmap(-1, 1 << 20)
buf.write(os.urandom(1 << 20))
os.pwrite(dfd, buf, size - (1 << 20))
os.pwrite(mfd, bytes(buf), size - (1 << 20))
whole = os.pread(fd, size + 4096, 0)
if whole != os.pread(mfd, size, 0):
    sys.exit("FAIL: image differs from the model while the daemon is stopped")
os.pwrite(fd, b"x" * 4096, size)  # past the end: grows DEST for now
os.kill(daemon, signal.SIGCONT)
os.fsync(fd)
os.close(fd)
os.close(dfd)
print("# 200 writes, an O_DIRECT write and a whole read with the daemon stopped")
PY
rc=$?
kill -CONT "$DAEMON_PID"
[ $rc = 0 ] || die "passed-through I/O failed; daemon said: $(grep -i passthrough "$T/daemon.log")"
grep -q "pass through" "$T/daemon.log" || die "no pass-through logged"
[ "$(stat -c %s "$T/dest")" = "$(stat -c %s "$T/src")" ] ||
	die "dest is $(stat -c %s "$T/dest") bytes after the last close, not the image size"
grep -q "cut back" "$T/daemon.log" || die "the growth was not logged"
unmount_clone "$T/m" "$T/meta"
cmp "$T/dest" "$T/model" || die "dest differs from the model"

# the same DEST mounts again, and reads back the same
mount_clone "$T/src" "$T/dest" "$T/meta" "$T/m"
cmp "$T/m/image" "$T/model" || die "image differs after remount"
unmount_clone "$T/m" "$T/meta"
pass
