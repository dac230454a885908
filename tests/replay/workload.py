#!/usr/bin/env python3
"""workload.py - write recognizable blocks into a clone image and log which
ones each completed fsync acknowledged (for tests/replay/replay.c and the
fault tests).

  workload.py run IMAGE ACKS --region R [--seconds S] [--ops N] [--seed S]
              [--span BYTES] [--tolerate-errors] [--sync MODE] [--direct]
              [--threads N]
  workload.py verify IMAGE ACKS      every acknowledged block reads back
                                      (that write or a later one)

Every block written is 4 KiB, 4 KiB aligned, and stamped (the format
replay.c's stamp_ok() checks):
  "CFSSTAMP", offset (u64 LE), generation (u64 LE), 8 zero bytes, then
  SHA-256(offset, generation as two u64 LE) repeated to the end.
Generations grow by one per write call. After each fsync that returns 0,
one line goes to ACKS:
  ack <CLOCK_MONOTONIC ns after fsync returned> <off>:<gen> ...
listing the newest generation of every block written since the previous
fsync call. --span keeps the writes in the first BYTES of the image.
With --tolerate-errors a failed write or fsync is counted, not
fatal; the blocks since the last good fsync are then simply not acked.
--sync o_sync|o_dsync opens the image with that flag, --sync
rwf_sync|rwf_dsync passes it to every pwritev: then every write is a
synchronous one (spec 2.5a), acknowledged by itself: one ack line after
each write returns, and no fsync calls but the last. --direct: O_DIRECT.
--threads N: N writers at once, each in its own 1/N of the image (or of
--span), each acknowledging its own writes; --ops and --seconds are per
thread.
"""
import argparse
import hashlib
import itertools
import mmap
import os
import random
import struct
import sys
import threading
import time

BLK = 4096


def stamp(off, gen):
    key = struct.pack("<QQ", off, gen)
    body = hashlib.sha256(key).digest() * ((BLK - 32) // 32)
    return b"CFSSTAMP" + key + bytes(8) + body


def parse_stamp(b, off):
    if len(b) != BLK or b[:8] != b"CFSSTAMP" or b[24:32] != bytes(8):
        return None
    o, gen = struct.unpack("<QQ", b[8:24])
    if o != off or b != stamp(off, gen):
        return None
    return gen


def ack(f, t, pending):
    f.write(" ".join(["ack", str(t)] + ["%d:%d" % kv for kv in sorted(pending.items())]) + "\n")
    f.flush()


def pick(rng, size, region):
    """A run of 4 KiB blocks: (first block offset, number of blocks)."""
    nblk = size // BLK
    per = region // BLK
    nreg = size // region  # whole regions only for whole-region writes
    kind = rng.randrange(10)
    if kind < 4:  # one block somewhere: a partial write, often unhydrated
        return rng.randrange(nblk) * BLK, 1
    if kind < 6 and nreg:  # a whole region: written without a copy
        return rng.randrange(nreg) * region, per
    if kind < 8:  # a few blocks across a region boundary
        n = rng.randint(2, 8)
        r = rng.randrange(1, max(2, size // region))
        first = max(0, min(r * per - n // 2, nblk - n))
        return first * BLK, n
    return None, 1  # rewrite a recent block


SYNC_OPEN = {"o_sync": os.O_SYNC, "o_dsync": os.O_DSYNC}
SYNC_RWF = {"rwf_sync": os.RWF_SYNC, "rwf_dsync": os.RWF_DSYNC}


def writer(a, fd, lo, size, seed, gens, acks, lock, out):
    """Write stamped runs into [lo, lo + size) and acknowledge them (after
    each fsync, or each write in a --sync mode); leaves the blocks written
    since the last ack in out["pending"]."""
    rng = random.Random(seed)
    sync_each = a.sync != "fsync"
    buf = mmap.mmap(-1, max(a.region, 8 * BLK) + BLK)  # page-aligned, for O_DIRECT
    pending = {}
    recent = []
    writes = fsyncs = errors = 0
    deadline = time.monotonic() + a.seconds if a.seconds else None
    next_sync = rng.randint(1, 8)
    i = 0
    while (a.ops and i < a.ops) or (deadline and time.monotonic() < deadline):
        i += 1
        off, n = pick(rng, size, a.region)
        off = rng.choice(recent) if off is None and recent else (off or 0) + lo
        gen = next(gens)
        data = b"".join(stamp(off + j * BLK, gen) for j in range(n))
        buf[:len(data)] = data
        try:
            os.pwritev(fd, [memoryview(buf)[:len(data)]], off, SYNC_RWF.get(a.sync, 0))
            for j in range(n):
                pending[off + j * BLK] = gen
            writes += 1
            if sync_each:  # acknowledged, durable: say so at once
                t = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
                with lock:
                    ack(acks, t, pending)
                pending.clear()
        except OSError:
            if not a.tolerate_errors:
                raise
            errors += 1
            # unknown state: never ack these blocks
            for j in range(n):
                pending.pop(off + j * BLK, None)
        recent = (recent + [off])[-16:]
        next_sync -= 1
        if next_sync == 0 and not sync_each:
            next_sync = rng.randint(1, 8)
            try:
                os.fsync(fd)
            except OSError:
                if not a.tolerate_errors:
                    raise
                errors += 1
                pending.clear()
                continue
            t = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
            fsyncs += 1
            with lock:
                ack(acks, t, pending)
            pending.clear()
    out.update(pending=pending, writes=writes, fsyncs=fsyncs, errors=errors)


def run(a):
    fd = os.open(a.image, os.O_RDWR | SYNC_OPEN.get(a.sync, 0) |
                 (os.O_DIRECT if a.direct else 0))
    size = os.lseek(fd, 0, os.SEEK_END)
    size -= size % BLK
    if a.span:
        size = min(size, a.span - a.span % max(BLK, a.region))
    acks = open(a.acks, "a")
    # generations: distinct across runs, one counter for all threads
    gens = itertools.count(int(time.time() * 1000) % 1000000 * 1000000 + 1)
    lock = threading.Lock()
    outs = [{} for _ in range(a.threads)]
    if a.threads == 1:
        writer(a, fd, 0, size, a.seed, gens, acks, lock, outs[0])
    else:
        # each thread its own share of the image, so no block is written
        # by two threads (whose acks could then come in either order)
        unit = max(BLK, a.region)
        share = size // a.threads - size // a.threads % unit
        threads = [threading.Thread(target=writer, args=(
            a, fd, k * share, share, a.seed * 1000 + k, gens, acks, lock, outs[k]))
            for k in range(a.threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if any("writes" not in o for o in outs):
            sys.exit("workload: a writer thread failed")
    pending = {}
    for o in outs:
        pending.update(o["pending"])
    writes = sum(o["writes"] for o in outs)
    fsyncs = sum(o["fsyncs"] for o in outs)
    errors = sum(o["errors"] for o in outs)
    try:
        os.fsync(fd)
        t = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        ack(acks, t, pending)
        fsyncs += 1
    except OSError:
        if not a.tolerate_errors:
            raise
        errors += 1
    acks.close()
    os.close(fd)
    print("workload: %d writes, %d acked fsyncs, %d errors" % (writes, fsyncs, errors))


def verify(a):
    want = {}
    for line in open(a.acks):
        w = line.split()
        if not w:
            continue
        for kv in w[2:]:
            off, gen = map(int, kv.split(":"))
            want[off] = max(want.get(off, 0), gen)
    fd = os.open(a.image, os.O_RDONLY)
    bad = 0
    for off, gen in sorted(want.items()):
        b = os.pread(fd, BLK, off)
        got = parse_stamp(b, off)
        if got is None or got < gen:
            bad += 1
            if bad <= 10:
                print("workload: acknowledged block at %d (gen %d) lost: %s"
                      % (off, gen, "older generation %d" % got if got
                         else "not a stamped block"), file=sys.stderr)
    os.close(fd)
    print("workload: %d acknowledged blocks checked, %d lost" % (len(want), bad))
    return 1 if bad else 0


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("image")
    r.add_argument("acks")
    r.add_argument("--region", type=int, default=65536)
    r.add_argument("--seconds", type=float, default=0)
    r.add_argument("--ops", type=int, default=0)
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--span", type=int, default=0)
    r.add_argument("--tolerate-errors", action="store_true")
    r.add_argument("--sync", default="fsync",
                   choices=["fsync"] + sorted(SYNC_OPEN) + sorted(SYNC_RWF))
    r.add_argument("--direct", action="store_true")
    r.add_argument("--threads", type=int, default=1)
    v = sub.add_parser("verify")
    v.add_argument("image")
    v.add_argument("acks")
    a = p.parse_args()
    if a.cmd == "run":
        if not a.ops and not a.seconds:
            a.ops = 500
        run(a)
        return 0
    return verify(a)


if __name__ == "__main__":
    sys.exit(main())
