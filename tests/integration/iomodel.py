#!/usr/bin/env python3
"""iomodel.py - drive the clone image and a model file side by side.

The model starts as a copy of SOURCE; every write goes to both, every read of
the image must equal the model. Used by the integration tests:

  iomodel.py random IMAGE MODEL --region R [--ops N] [--seed S] [--fsync-every K]
  iomodel.py concurrent IMAGE MODEL --region R --regions 4 --writers 8
  iomodel.py verify IMAGE MODEL
"""
import argparse
import os
import random
import sys
from multiprocessing import Process


def fail(msg):
    print("iomodel: " + msg, file=sys.stderr)
    sys.exit(1)


def pick_write(rng, size, region):
    """An offset and length covering the interesting cases."""
    kind = rng.randrange(7)
    nreg = (size + region - 1) // region
    r = rng.randrange(nreg)
    if kind == 0:  # whole region(s), aligned
        n = rng.randint(1, 3)
        off, ln = r * region, n * region
    elif kind == 1:  # small unaligned inside a region
        off, ln = r * region + rng.randrange(region), rng.randint(1, 700)
    elif kind == 2:  # spanning a region boundary
        off = max(0, (r + 1) * region - rng.randint(1, region // 2))
        ln = rng.randint(2, region)
    elif kind == 3:  # at the very end of the image
        ln = rng.randint(1, 3 * region // 2)
        off = max(0, size - ln)
    elif kind == 4:  # 4 KiB aligned block
        off, ln = (rng.randrange(size) // 4096) * 4096, 4096
    elif kind == 5:  # large, many regions, unaligned
        off, ln = rng.randrange(size), rng.randint(region, 5 * region)
    else:  # 512-byte sector
        off, ln = (rng.randrange(size) // 512) * 512, 512
    off = min(off, size - 1)
    ln = min(ln, size - off)
    return off, ln


def compare(img, model, off, ln, what):
    a = os.pread(img, ln, off)
    b = os.pread(model, ln, off)
    if a != b:
        for i in range(min(len(a), len(b))):
            if a[i] != b[i]:
                break
        else:
            i = min(len(a), len(b))
        fail("%s: mismatch at byte %d (read %d bytes at %d, got %d)"
             % (what, off + i, ln, off, len(a)))


def cmd_random(a):
    rng = random.Random(a.seed)
    img = os.open(a.image, os.O_RDWR)
    model = os.open(a.model, os.O_RDWR)
    size = os.fstat(model).st_size
    if os.fstat(img).st_size != size:
        fail("image size %d != model size %d" % (os.fstat(img).st_size, size))
    for i in range(a.ops):
        off, ln = pick_write(rng, size, a.region)
        if rng.random() < 0.5:
            data = rng.randbytes(ln)
            if os.pwrite(img, data, off) != ln:
                fail("short write at %d" % off)
            os.pwrite(model, data, off)
        else:
            compare(img, model, off, ln, "op %d" % i)
        if a.fsync_every and i % a.fsync_every == 0:
            os.fsync(img)
    os.fsync(img)
    os.fsync(model)
    cmd_verify(a)


def writer(image, slices, seed):
    img = os.open(image, os.O_WRONLY)
    for off, data in slices:
        os.pwrite(img, data, off)
    os.close(img)


def cmd_concurrent(a):
    """Writers hit disjoint slices of the same few regions at once, while
    those regions hydrate; the result must be SOURCE plus every slice."""
    rng = random.Random(a.seed)
    model = os.open(a.model, os.O_RDWR)
    size = os.fstat(model).st_size
    first = rng.randrange(max(1, size // a.region - a.regions))
    span = a.regions * a.region
    base = first * a.region
    # cut the span into small disjoint slices, dealt to the writers
    cuts = sorted(rng.sample(range(1, span), 64 * a.writers))
    bounds = [0] + cuts + [span]
    slices = [(base + bounds[i], rng.randbytes(bounds[i + 1] - bounds[i]))
              for i in range(len(bounds) - 1)]
    rng.shuffle(slices)
    procs = [Process(target=writer, args=(a.image, slices[w::a.writers], w))
             for w in range(a.writers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        if p.exitcode:
            fail("writer exited with %d" % p.exitcode)
    for off, data in slices:
        os.pwrite(model, data, off)
    os.fsync(model)
    img = os.open(a.image, os.O_RDWR)
    os.fsync(img)
    cmd_verify(a)


def cmd_verify(a):
    img = os.open(a.image, os.O_RDONLY)
    model = os.open(a.model, os.O_RDONLY)
    size = os.fstat(model).st_size
    if os.fstat(img).st_size != size:
        fail("image size differs from model")
    step = 1 << 20
    for off in range(0, size, step):
        compare(img, model, off, min(step, size - off), "verify")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("cmd", choices=["random", "concurrent", "verify"])
    p.add_argument("image")
    p.add_argument("model")
    p.add_argument("--region", type=int, default=65536)
    p.add_argument("--ops", type=int, default=2000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--fsync-every", type=int, default=0)
    p.add_argument("--regions", type=int, default=4)
    p.add_argument("--writers", type=int, default=8)
    a = p.parse_args()
    {"random": cmd_random, "concurrent": cmd_concurrent,
     "verify": cmd_verify}[a.cmd](a)


if __name__ == "__main__":
    main()
