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

With --faults, each case runs instead with a DEST flush error (and, where
the write sets a bit, a META write error) from just before its write: the
primitive must report it, and so must the next fsync of another file open
since before (once); status counts lost_writes. "ok   CASE/RULE (what the
primitive said; check)" or "FAIL CASE/RULE: why" per case.

usage: syncmatrix.py TOP WORKDIR [--faults]
"""
import errno
import mmap
import os
import random
import re
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clonetest import (BLK, Clone, Fail, call, deadline_poll, ename,  # noqa: E402
                       sigterm_exits, write_source)

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
        try:
            m.flush(off - off % mmap.PAGESIZE, len(data) + off % mmap.PAGESIZE)  # msync(MS_SYNC)
        except BaseException:
            m.close()
            os.close(fd)
            raise
        return fd, m
    oflags, how, sync = PY[prim]
    flags = os.O_RDWR | oflags | (os.O_DIRECT if mode == "direct" else 0)
    fd = os.open(image, flags)
    buf = aligned(data)
    try:
        if how == "pwrite":
            n = os.pwrite(fd, buf, off)
        else:
            n = os.pwritev(fd, [buf], off, how)
        if n != len(data):
            raise Fail("short write: %d of %d" % (n, len(data)))
        if sync:
            sync(fd)
    except BaseException:
        os.close(fd)
        raise
    return fd, buf


class WriteFailed(Fail):
    """The write or its sync reported an error (a fault case wants one)."""


def tool_write(c, prim, mode, off, data, arm=None):
    """Loop device or qemu-io; returns the loop device to detach, if any
    (on a failure it is detached here). @arm is called just before the
    write (setting up a loop device flushes the image by itself)."""
    loop = None
    try:
        if prim.startswith("qemu"):
            if arm:
                arm()
            cache = "writethrough" if prim == "qemu_writethrough" else "directsync"
            cmd = ["qemu-io", "-f", "raw", "-t", cache, "-c",
                   "write -P 0x%02x %d %d" % (data[0], off, len(data)), c.image]
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            if r.returncode or "failed" in r.stdout.lower() or "rror" in r.stdout:
                raise WriteFailed("qemu-io: %s%s" % (r.stdout, r.stderr))
            return None
        dio = "on" if mode.endswith("loop-dio") else "off"
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
        if arm:
            arm()
        r = subprocess.run(dd, capture_output=True, text=True, timeout=60)
        if r.returncode:
            raise WriteFailed("dd to %s: %s" % (loop, r.stderr.strip()))
        return loop
    except subprocess.CalledProcessError as e:
        if loop:
            subprocess.run(["losetup", "-d", loop], check=False)
        raise Fail("%s failed: %s" % (" ".join(e.cmd[:3]), e.stderr or ""))
    except Fail:
        if loop:
            subprocess.run(["losetup", "-d", loop], check=False)
        raise


def set_up(c, name, prim, mode, shape, env=None):
    """Mount for the case and pick its write: (region, off, data)."""
    rng = random.Random(name)
    hydrating = mode.startswith("hydrating")
    if mode.startswith("hydrated"):
        c.mount(QUIET, env)
        # status commits first (spec 5.1): all hydrated and durable (new
        # read-only opens would pass through, spec 2.9; writable ones go
        # through the daemon)
        deadline_poll(lambda: c.json_status()["hydration_done"], 30, "full hydration")
        region = 5
    elif hydrating:
        # background copies from region 0 up, slowly: the target, near the
        # end, is still unhydrated when it is written
        c.mount(QUIET + ",hydration_rate=262144", env)
        region = NREG - 2
    else:
        c.mount(QUIET + ",no_hydration", env)
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
    return region, off, data


def issue_write(c, prim, mode, off, data, arm=None):
    """The write and its sync: (fd and buffer or map to keep, loop device).
    @arm is called just before the write."""
    if prim.startswith(("loop", "qemu")):
        return None, tool_write(c, prim, mode, off, data, arm)
    if arm:
        arm()
    return py_write(prim, "direct" if mode.endswith("direct") else "buffered",
                    c.image, off, data), None


def close_kept(keep):
    if not keep:
        return
    if isinstance(keep[1], mmap.mmap):
        try:
            keep[1].close()
        except (OSError, ValueError):
            pass
    try:
        os.close(keep[0])
    except OSError:
        pass


def run_case(top, work, src, source, name, prim, mode, shape):
    c = Clone(top, work, src, name.replace("/", "-"))
    region, off, data = set_up(c, name, prim, mode, shape)
    base, length = region * REGION, len(data)
    keep = loop = None
    try:
        keep, loop = issue_write(c, prim, mode, off, data)
    finally:
        c.kill()  # acknowledged (or failed): now, before any close
        close_kept(keep)
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


def fault_case(top, work, src, name, prim, mode, shape, rule):
    """The case's write and sync with @rule in force from just before the
    write: the primitive must report the error (it was to make the write
    durable, and could not), and a file open since before the fault must
    hear of it at its next fsync, once (spec 2.5a, 2.5b)."""
    c = Clone(top, work, src, name.replace("/", "-").replace(":", "_"))
    faults = os.path.join(c.dir, "faults")

    def set_faults(text):
        with open(faults + ".tmp", "w") as f:
            f.write(text)
        os.rename(faults + ".tmp", faults)

    set_faults("")
    region, off, data = set_up(c, name, prim, mode, shape, {"CLONEFS_FAULTS_FILE": faults})
    problems = []
    keep = loop = None
    other = os.open(c.image, os.O_RDWR)
    try:
        try:
            keep, loop = issue_write(c, prim, mode, off, data,
                                     lambda: set_faults(rule + "\n"))
            result = "acknowledged"
        except OSError as e:
            result = ename(e.errno)
        except WriteFailed as e:
            result = "failed (%s)" % str(e).splitlines()[0][:60]
        set_faults("")
        if c.faults_injected() == 0:
            problems.append("the fault never fired: nothing was flushed or committed")
        elif result == "acknowledged":
            problems.append("the write was acknowledged though its flush or commit failed")
        elif result[0] == "E" and result != "EIO":
            problems.append("the write failed with %s, want EIO" % result)
        r = call(os.fsync, other)
        if r != errno.EIO:
            problems.append("fsync of a file open at the error: %s, want EIO" % ename(r))
        r = call(os.fsync, other)
        if r:
            problems.append("its second fsync: %s, want 0 (reported once)" % ename(r))
        lost = c.json_status().get("lost_writes")
        if not lost:
            problems.append("JSON lost_writes: %s, want >= 1" % lost)
    finally:
        os.close(other)
        close_kept(keep)
        if loop:
            subprocess.run(["losetup", "-d", loop], check=False)
        if c.daemon.poll() is None:
            # a detached loop device lets go of the image soon after
            deadline_poll(lambda: not subprocess.run(
                ["losetup", "-j", c.image], capture_output=True, text=True).stdout,
                10, "the loop device to let go")
            c.unmount()
    note = c.check()
    if problems:
        raise Fail("; ".join(problems))
    return "%s; %s" % (result, note)


def fault_cases():
    """The sync matrix's cases, with the faults their sync must meet: a
    DEST flush error always, a META write error where the write sets a bit
    (not on a hydrated image). Hydration stays off: only the primitive
    flushes and commits."""
    for prim, mode, shape in cases():
        if mode.startswith("hydrating"):
            continue
        if not mode.startswith("hydrated"):
            yield prim, mode, shape, "meta:write:eio:once"
        yield prim, mode, shape, "dest:flush:eio:once"
    # the tools on a hydrated image: only DEST's flush makes their writes
    # durable, which a kill cannot see
    for prim in ("loop_dsync", "loop_fsync"):
        for mode in ("hydrated-loop", "hydrated-loop-dio"):
            yield prim, mode, "partial", "dest:flush:eio:once"
    for prim in ("qemu_writethrough", "qemu_directsync"):
        yield prim, "hydrated-qemu", "partial", "dest:flush:eio:once"


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


def main_faults(top, work, only):
    src, _ = write_source(work, SIZE, 1)
    n = failed = 0
    for prim, mode, shape, rule in fault_cases():
        name = "%s/%s/%s/%s" % (prim, mode, shape, rule)
        if not only.search(name):
            continue
        n += 1
        try:
            note = fault_case(top, work, src, name, prim, mode, shape, rule)
            print("ok   %s (%s)" % (name, note), flush=True)
        except (Fail, OSError) as e:
            failed += 1
            print("FAIL %s: %s" % (name, e), flush=True)
    print("syncmatrix --faults: %d cases, %d failed" % (n, failed))
    return 1 if failed or not n else 0


def main():
    sigterm_exits()
    top, work = sys.argv[1], sys.argv[2]
    only = re.compile(os.environ.get("SYNC_CASES", ""))
    if sys.argv[3:] == ["--faults"]:
        return main_faults(top, work, only)
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
