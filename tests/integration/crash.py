#!/usr/bin/env python3
"""crash.py - SIGKILL the daemon at random moments and check what survives.

Each round: mount a clone (foreground daemon, hydration running, short
commit period), start a writer that stamps 4 KiB blocks and fsyncs, kill -9
the daemon after a random delay, then check:
  - `clonefs check META` is clean (a crash never leaves torn metadata);
  - after a remount every block holds a value it may hold: the value
    acknowledged by the writer's last completed fsync, or one written since
    (unacknowledged writes may or may not survive), never anything else -
    in particular a hydrated region never shows data that is neither
    SOURCE's nor the writer's.
With CRASH_NBD=1, SOURCE is served by nbdkit over a unix socket (an NBD
URI, issue 24), started and stopped here.
usage: crash.py TOP WORKDIR ROUNDS SEED
"""
import os
import random
import signal
import subprocess
import sys
import time

BLK = 4096
REGION = 65536
SIZE = 32 << 20


def stamp(rnd, seq, blk):
    head = b"CFS:%08d:%08d:%08d:" % (rnd, seq, blk)
    return (head * (BLK // len(head) + 1))[:BLK]


def writer(image, log_path, rnd, seed):
    """Child: write stamped blocks and fsync; log before each write and
    after each acknowledged fsync, so the parent knows what may be where."""
    rng = random.Random(seed)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        fd = os.open(image, os.O_RDWR)
        seq = 0
        while True:
            for _ in range(rng.randint(1, 8)):
                blk = rng.randrange(SIZE // BLK)
                if rng.random() < 0.3:  # a whole region now and then
                    blk -= blk % (REGION // BLK)
                    n = REGION // BLK
                else:
                    n = 1
                os.write(log, b"W %d %d %d\n" % (blk, n, seq))
                data = b"".join(stamp(rnd, seq, b) for b in range(blk, blk + n))
                os.pwrite(fd, data, blk * BLK)
                seq += 1
            os.fsync(fd)
            os.write(log, b"A\n")
    except OSError:
        os._exit(0)


def wait_for(cond, secs, what):
    end = time.monotonic() + secs
    while not cond():
        if time.monotonic() > end:
            sys.exit("crash.py: timed out waiting for " + what)
        time.sleep(0.02)


def is_mounted(mnt):
    with open("/proc/mounts") as f:
        return any(l.split()[1] == mnt for l in f)


def unmount(mnt):
    if is_mounted(mnt):
        subprocess.run(["umount", "-l", mnt], check=False)


def main():
    top, work, rounds, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    rng = random.Random(seed)
    helper = os.environ.get("MOUNT_CLONEFS", top + "/mount/mount.clonefs")
    tool = top + "/src/clonefs"
    src, dest, meta, mnt = (os.path.join(work, n) for n in ("src", "dest", "meta", "m"))
    os.makedirs(mnt, exist_ok=True)
    with open(src, "wb") as f:
        f.write(rng.randbytes(SIZE))
    with open(src, "rb") as f:
        source = f.read()
    server = None
    if os.environ.get("CRASH_NBD") == "1":
        sock, pidfile = os.path.join(work, "src.sock"), os.path.join(work, "src.pid")
        server = subprocess.Popen(["nbdkit", "-f", "-r", "-U", sock, "-P", pidfile,
                                   "file", src], stderr=subprocess.DEVNULL)
        # the pid file is written once the server accepts connections
        wait_for(lambda: os.path.exists(pidfile), 10, "nbdkit")
        src = "nbd+unix:///?socket=" + sock
    try:
        rounds_of(work, rounds, rng, helper, tool, src, dest, meta, mnt, source)
    finally:
        if server:
            server.terminate()
            server.wait()
    print("crash.py: %d rounds, every acknowledged write intact, check clean" % rounds)


def rounds_of(work, rounds, rng, helper, tool, src, dest, meta, mnt, source):
    # allowed[blk]: set of values (None = SOURCE's) the block may hold now
    allowed = None
    killed_in_commit = 0
    for rnd in range(rounds):
        if rnd % 25 == 0:  # start over now and then so hydration keeps running
            for p in (dest, meta):
                if os.path.exists(p):
                    os.unlink(p)
            allowed = [{None} for _ in range(SIZE // BLK)]
        opts = "hydration_rate=%dM,commit_period=%dms,hydration_batch_size=%d" % (
            rng.choice([8, 32, 128]), rng.choice([50, 1000, 5000]), rng.choice([1, 4, 16]))
        daemon = subprocess.Popen([helper, src, dest, meta, mnt, "-f", "-o", opts],
                                  stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: os.path.exists(mnt + "/image"), 10, "mount")
            log_path = os.path.join(work, "log")
            if os.path.exists(log_path):
                os.unlink(log_path)
            w = os.fork()
            if w == 0:
                writer(mnt + "/image", log_path, rnd, rng.randrange(1 << 30))
            time.sleep(rng.uniform(0.0, 0.4))  # the random moment to crash at
            daemon.send_signal(signal.SIGKILL)
            daemon.wait()
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()
            unmount(mnt)
        os.waitpid(w, 0)
        # what the writer did: pending writes join the allowed set; an ack
        # narrows every block written before it to its last value
        pending = {}
        with open(log_path) as f:
            for line in f:
                p = line.split()
                if p[0] == "W":
                    blk, n, seq = int(p[1]), int(p[2]), int(p[3])
                    for b in range(blk, blk + n):
                        pending[b] = seq
                        allowed[b].add((rnd, seq))
                elif p[0] == "A":
                    for b, seq in pending.items():
                        allowed[b] = {(rnd, seq)}
                    pending = {}
        r = subprocess.run([tool, "check", meta], capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit("crash.py: round %d: check failed: %s%s" % (rnd, r.stdout, r.stderr))
        # remount read-only (nothing moves) and compare every block
        daemon = subprocess.Popen([helper, src, dest, meta, mnt, "-f", "-o", "ro"],
                                  stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: os.path.exists(mnt + "/image"), 10, "remount")
            with open(mnt + "/image", "rb") as f:
                image = f.read()
        finally:
            unmount(mnt)
            daemon.terminate()
            daemon.wait()
        for b in range(SIZE // BLK):
            got = image[b * BLK:(b + 1) * BLK]
            if got == source[b * BLK:(b + 1) * BLK]:
                val = None
            else:
                p = got[:31].split(b":")
                try:
                    val = (int(p[1]), int(p[2]))
                    ok = got == stamp(val[0], val[1], b)
                except (IndexError, ValueError):
                    ok = False
                if not ok:
                    sys.exit("crash.py: round %d: block %d holds data that is neither "
                             "SOURCE's nor written" % (rnd, b))
            if val not in allowed[b]:
                sys.exit("crash.py: round %d: block %d holds %s, allowed %s"
                         % (rnd, b, val, sorted(allowed[b], key=str)[:4]))
            allowed[b] = {val}


if __name__ == "__main__":
    main()
