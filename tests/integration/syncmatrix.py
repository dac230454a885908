#!/usr/bin/env python3
"""syncmatrix.py - every durability primitive on every open mode (spec 2.5,
2.5a): write a pattern, and the moment the write or its sync is
acknowledged, SIGKILL the daemon; remount and check that the pattern is
there and the rest of its region is SOURCE's.

A SIGKILL keeps what the daemon wrote to DEST (the kernel's page cache
survives it) but loses every hydration bit not yet committed to META: so
a case fails when an acknowledged write needed a new bit (a partial write
to an unhydrated region, which hydrates it, or a whole-region write) and
the acknowledgement came before the commit. That DEST was also flushed is
t-sync-replay.sh's part (write log and replay).

Each case starts from a fresh DEST and META and prints one line:
  ok   PRIMITIVE/MODE/SHAPE
  FAIL PRIMITIVE/MODE/SHAPE: why
then "syncmatrix: N cases, M failed". SYNC_CASES=REGEX runs only the
matching cases.

usage: syncmatrix.py TOP WORKDIR
"""
import mmap
import os
import random
import re
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clonetest import BLK, Clone, Fail, deadline_poll, sigterm_exits, write_source  # noqa: E402

REGION = 65536
SIZE = 2 << 20
NREG = SIZE // REGION
# no periodic commit during a case: only what the primitive does commits
QUIET = "commit_period=3600"

# the python primitives: open flags added, how the write is issued, the
# sync call after it
PY = {
    "fsync": (0, "pwrite", os.fsync),
    "fdatasync": (0, "pwrite", os.fdatasync),
    "o_sync": (os.O_SYNC, "pwrite", None),
    "o_dsync": (os.O_DSYNC, "pwrite", None),
    "rwf_sync": (0, os.RWF_SYNC, None),
    "rwf_dsync": (0, os.RWF_DSYNC, None),
}


def aligned(data):
    """data in page-aligned memory (O_DIRECT)."""
    m = mmap.mmap(-1, max(len(data), BLK))
    m.write(data)
    return m


def py_write(prim, mode, image, off, data):
    """Issue the write; return the fd, left open until the daemon is dead
    (a close sends a release, and nothing must reach the daemon between
    the acknowledgement and the kill)."""
    if prim == "msync":
        fd = os.open(image, os.O_RDWR)
        m = mmap.mmap(fd, SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        m[off:off + len(data)] = data
        m.flush(off - off % mmap.PAGESIZE, len(data) + off % mmap.PAGESIZE)  # msync(MS_SYNC)
        return fd, m
    oflags, how, sync = PY[prim]
    flags = os.O_RDWR | oflags | (os.O_DIRECT if mode == "direct" else 0)
    fd = os.open(image, flags)
    buf = aligned(data)
    if how == "pwrite":
        n = os.pwrite(fd, buf, off)
    else:
        n = os.pwritev(fd, [buf], off, how)
    if n != len(data):
        raise Fail("short write: %d of %d" % (n, len(data)))
    if sync:
        sync(fd)
    return fd, buf


def tool_write(c, prim, mode, off, data):
    """Loop device or qemu-io; returns the loop device to detach, if any."""
    loop = None
    try:
        if prim.startswith("qemu"):
            cache = "writethrough" if prim == "qemu_writethrough" else "directsync"
            cmd = ["qemu-io", "-f", "raw", "-t", cache, "-c",
                   "write -P 0x%02x %d %d" % (data[0], off, len(data)), c.image]
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            if r.returncode or "failed" in r.stdout.lower() or "rror" in r.stdout:
                raise Fail("qemu-io: %s%s" % (r.stdout, r.stderr))
            return None
        dio = "on" if mode == "loop-dio" else "off"
        loop = subprocess.run(["losetup", "-f", "--show", "--direct-io=" + dio, c.image],
                              capture_output=True, text=True, check=True).stdout.strip()
        with open(os.path.join(os.path.dirname(c.dir), "loops"), "a") as f:
            f.write(loop + "\n")
        got = subprocess.run(["losetup", "-n", "-O", "DIO", loop], capture_output=True,
                             text=True).stdout.strip()
        if got != {"on": "1", "off": "0"}[dio]:
            raise Fail("%s: direct I/O is '%s', want %s" % (loop, got, dio))
        chunk = c.dir + "/chunk"
        with open(chunk, "wb") as f:
            f.write(data)
        sync = prim.split("_", 1)[1]  # loop_dsync, loop_fsync
        oflag = ["seek_bytes"] + (["direct"] if dio == "on" else []) + \
            (["dsync"] if sync == "dsync" else [])
        dd = ["dd", "if=" + chunk, "of=" + loop, "bs=%d" % len(data), "count=1",
              "seek=%d" % off, "oflag=" + ",".join(oflag), "status=none"]
        if sync == "fsync":
            dd.append("conv=fsync")
        subprocess.run(dd, check=True, timeout=60)
        return loop
    except subprocess.CalledProcessError as e:
        raise Fail("%s failed: %s" % (" ".join(e.cmd[:3]), e.stderr or ""))


def run_case(top, work, src, source, name, prim, mode, shape):
    c = Clone(top, work, src, name.replace("/", "-"))
    rng = random.Random(name)
    hydrating = mode.startswith("hydrating")
    if mode.startswith("hydrated"):
        c.mount(QUIET)
        # status commits first (spec 5.1): all hydrated and durable (new
        # read-only opens would pass through, spec 2.9; writable ones go
        # through the daemon)
        deadline_poll(lambda: c.json_status()["hydration_done"], 30, "full hydration")
        region = 5
    elif hydrating:
        # background copies from region 0 up, slowly: the target, near the
        # end, is still unhydrated when it is written
        c.mount(QUIET + ",hydration_rate=262144")
        region = NREG - 2
    else:
        c.mount(QUIET + ",no_hydration")
        region = 5 if shape == "partial" else 9
    base = region * REGION
    if shape == "partial":
        off, length = base + 3 * BLK, BLK
    else:
        off, length = base, REGION
    if prim.startswith("qemu"):
        data = bytes([rng.randrange(1, 256)]) * length
    else:
        data = rng.randbytes(length)
    keep = loop = None
    try:
        if prim.startswith(("loop", "qemu")):
            loop = tool_write(c, prim, mode, off, data)
        else:
            keep = py_write(prim, "direct" if mode.endswith("direct") else "buffered",
                            c.image, off, data)
    finally:
        c.kill()  # acknowledged (or failed): now, before any close
        if keep:
            if isinstance(keep[1], mmap.mmap):
                try:
                    keep[1].close()
                except (OSError, ValueError):
                    pass
            try:
                os.close(keep[0])
            except OSError:
                pass
        if loop:
            subprocess.run(["losetup", "-d", loop], check=False)
    note = c.check()
    got = c.read_image(base, REGION)
    want = bytearray(source[base:base + REGION])
    want[off - base:off - base + length] = data
    if got != bytes(want):
        w = got[off - base:off - base + length]
        if w == data:
            raise Fail("the write is there but the rest of region %d is not SOURCE's" % region)
        if w == source[off:off + length]:
            raise Fail("acknowledged write lost: region %d reads SOURCE after the crash" % region)
        raise Fail("acknowledged write lost: region %d holds other data" % region)
    return note


def cases():
    for prim in PY:
        for mode in ("buffered", "direct"):
            for shape in ("partial", "whole"):
                yield prim, mode, shape
    for shape in ("partial", "whole"):
        yield "msync", "mmap", shape
    # a fully hydrated image: no bit to commit (only read-only opens pass
    # through; DEST's flush is t-sync-replay.sh's to check)
    for prim in list(PY) + ["msync"]:
        yield prim, "hydrated", "partial"
    yield "o_dsync", "hydrated-direct", "partial"
    # (blockdev --flushbufs is no case: BLKFLSBUF writes the device's cache
    # back and drops it but sends no flush, on any block device; it lost
    # the write here before and after the O_DSYNC fix alike)
    for prim in ("loop_dsync", "loop_fsync"):
        for mode in ("loop", "loop-dio"):
            for shape in ("partial", "whole"):
                yield prim, mode, shape
    for prim in ("qemu_writethrough", "qemu_directsync"):
        for shape in ("partial", "whole"):
            yield prim, "qemu", shape
    yield "o_dsync", "hydrating", "partial"
    yield "rwf_dsync", "hydrating-direct", "whole"
    yield "fsync", "hydrating", "partial"


def main():
    sigterm_exits()
    top, work = sys.argv[1], sys.argv[2]
    only = re.compile(os.environ.get("SYNC_CASES", ""))
    src, source = write_source(work, SIZE, 1)
    n = failed = 0
    for prim, mode, shape in cases():
        name = "%s/%s/%s" % (prim, mode, shape)
        if not only.search(name):
            continue
        n += 1
        t0 = time.monotonic()
        try:
            note = run_case(top, work, src, source, name, prim, mode, shape)
            print("ok   %s (%.1fs)%s" % (name, time.monotonic() - t0,
                                        "" if note == "clean" else "; " + note), flush=True)
        except (Fail, OSError) as e:
            failed += 1
            print("FAIL %s: %s" % (name, e), flush=True)
    print("syncmatrix: %d cases, %d failed" % (n, failed))
    return 1 if failed or not n else 0


if __name__ == "__main__":
    sys.exit(main())
