#!/usr/bin/env python3
"""benchlib.py - the small helpers scripts/bench needs.

  mksparse FILE SIZE FRACTION SEED   sparse FILE with FRACTION random data extents
  qmp SOCK stream NODE               start block-stream on NODE; return at once
  qmp SOCK stream-wait NODE TIMEOUT  start block-stream on NODE and wait for the
                                     job to complete; print seconds it took
  qmp SOCK job-wait TIMEOUT          wait until no block job runs; print seconds
  report RESDIR OUT.json             print the table, write the JSON
"""
import json
import os
import random
import socket
import statistics
import sys
import time


def die(msg):
    print("benchlib: " + msg, file=sys.stderr)
    sys.exit(1)


# ---- sparse source -----------------------------------------------------------

def mksparse(path, size, fraction, seed):
    """A SIZE-byte sparse file whose data is FRACTION of it, in random extents
    of 4 KiB to 2 MiB at random 4 KiB-aligned offsets (never overlapping)."""
    rng = random.Random(seed)
    want = int(size * fraction)
    extents = []  # sorted, non-overlapping (start, end)
    have = 0
    page = 4096
    while have < want:
        length = min(rng.randrange(1, 513) * page, want - have)
        length = max(page, (length + page - 1) // page * page)
        start = rng.randrange(0, (size - length) // page + 1) * page
        end = start + length
        if any(s < end and start < e for s, e in extents):
            continue
        extents.append((start, end))
        have += length
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, size)
        for s, e in sorted(extents):
            os.pwrite(fd, os.urandom(e - s), s)
        os.fsync(fd)
    finally:
        os.close(fd)
    print("%d extents, %d bytes of data" % (len(extents), have))


# ---- QMP ---------------------------------------------------------------------

class QMP:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(path)
        self.f = self.s.makefile("rw")
        self.events = []
        self._read()  # greeting
        self.cmd("qmp_capabilities")

    def _read(self):
        line = self.f.readline()
        if not line:
            die("QMP connection closed")
        return json.loads(line)

    def cmd(self, name, **args):
        self.f.write(json.dumps({"execute": name, "arguments": args}) + "\n")
        self.f.flush()
        while True:
            m = self._read()
            if "event" in m:
                self.events.append(m)
                continue
            if "error" in m:
                die("QMP %s: %s" % (name, m["error"].get("desc")))
            return m.get("return")

    def jobs(self):
        return self.cmd("query-block-jobs")


def qmp_main(argv):
    q = QMP(argv[0])
    what = argv[1]
    if what in ("stream", "stream-wait"):
        t0 = time.time()
        q.cmd("block-stream", **{"job-id": "bench-stream", "device": argv[2]})
        if what == "stream":
            return
        timeout = float(argv[3])
    elif what == "job-wait":
        t0 = time.time()
        timeout = float(argv[2])
    else:
        die("qmp: unknown %s" % what)
    while q.jobs():
        if time.time() - t0 > timeout:
            die("block job not done after %ss" % timeout)
        time.sleep(0.02)
    for e in q.events:
        if e["event"] == "BLOCK_JOB_ERROR":
            die("block job error: %s" % e)
    print("%.3f" % (time.time() - t0))


# ---- report ------------------------------------------------------------------

CONFIGS = [
    ("raw", "raw file"),
    ("raw-near", "raw DEST, by clonefs"),
    ("raw-src", "raw SOURCE, by cfs"),
    ("raw-new", "raw new file, by cfs"),
    ("pt", "passthrough_ll"),
    ("pt-hyd", "pt, by cfs hydrated"),
    ("pt-unhyd", "pt, by cfs unhyd."),
    ("qemu-cor", "qemu COR (unhyd.)"),
    ("qemu-hyd", "qemu streamed"),
    ("cfs-unhyd", "clonefs unhydrated"),
    ("cfs-hyd", "clonefs hydrated"),
]
WORKLOADS = [
    ("seqread-buf", "seq read 1M buffered"),
    ("seqwrite-buf", "seq write 1M buffered"),
    ("randread-buf", "rand read 4k buffered"),
    ("randwrite-buf", "rand write 4k buffered"),
    ("seqread-direct", "seq read 1M O_DIRECT"),
    ("seqwrite-direct", "seq write 1M O_DIRECT"),
    ("randread-direct", "rand read 4k O_DIRECT"),
    ("randwrite-direct", "rand write 4k O_DIRECT"),
    ("randwrite-threads", "rand write 4k O_DIRECT 8 thr"),
]
# repeated runs of one config: CFG, CFG.2, CFG.3, ... (scripts/bench's rep_sfx)
REP_SUFFIXES = [""] + [".%d" % i for i in range(2, 100)]
# qemu peer of each clonefs state
QEMU_PEER = {"cfs-unhyd": "qemu-cor", "cfs-hyd": "qemu-hyd"}
DIRECT_WL = ["seqread-direct", "seqwrite-direct", "randread-direct", "randwrite-direct"]
# Targets taken from pairs run back to back, REPS of them (suffixed .2, .3,
# ...), as the median ratio (README): the buffered sequential ones against
# raw on the file clonefs uses, in its state; the O_DIRECT ones against
# passthrough_ll. (config, workload, reference, at least)
PAIRS = [("cfs-hyd", "seqread-buf", "raw-near", 0.90), ("cfs-hyd", "seqwrite-buf", "raw-near", 0.90),
         ("cfs-unhyd", "seqread-buf", "raw-src", 0.90),
         ("cfs-unhyd", "seqwrite-buf", "raw-new", 0.90)] + [
    (cfg, wl, "pt-" + cfg[len("cfs-"):], 1.0) for cfg in ("cfs-hyd", "cfs-unhyd")
    for wl in DIRECT_WL]


def load_metrics(resdir):
    m = {}
    path = os.path.join(resdir, "metrics.jsonl")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    d = json.loads(line)
                    m[d["key"]] = d["value"]
    return m


def fio_summary(path):
    with open(path) as f:
        text = f.read()
    # fio may print warnings before the JSON
    j = json.loads(text[text.index("{"):])
    job = j["jobs"][0]
    rw = "write" if job["write"]["io_bytes"] else "read"
    d = job[rw]
    pct = d["clat_ns"].get("percentile", {})

    def p(k):
        v = pct.get(k)
        return v / 1000.0 if v is not None else None

    return {
        "dir": rw,
        "io_bytes": d["io_bytes"],
        "runtime_ms": d["runtime"],
        "bw_MiBps": d["bw_bytes"] / 2**20,
        "iops": d["iops"],
        "clat_p50_us": p("50.000000"),
        "clat_p99_us": p("99.000000"),
        "clat_mean_us": d["clat_ns"]["mean"] / 1000.0,
        "clat_max_us": d["clat_ns"]["max"] / 1000.0,
    }


def ratio(a, b):
    if a is None or b is None or not b:
        return None
    return a / b


def fmt(v, spec="%.2f", none="-"):
    return none if v is None else spec % v


SYNC_WL = [("syncwrite", "QD1"), ("syncwrite-8t", "8 threads")]
SYNC_CONFIGS = [("raw", "raw file"), ("raw-near", "raw DEST, by cfs hyd."),
                ("cfs-hyd", "clonefs hydrated"), ("cfs-unhyd", "clonefs unhydrated, idle"),
                ("cfs-hydrating", "clonefs hydrating"), ("qemu-cor", "qemu overlay (unhyd.)"),
                ("qemu-hyd", "qemu streamed")]
SYNC_MAX_MS = 50.0


def reps_of(byc, cfg):
    """The runs of CFG, CFG.2, ... in order, as (suffix, run)."""
    out = []
    for n in REP_SUFFIXES:
        r = byc.get(cfg + n)
        if r is None:
            if n:
                break
            continue
        out.append((n, r))
    return out


def sync_write_section(runs, metrics, res, P):
    """Table of 4 KiB O_DSYNC write latencies; returns the pair ratios the
    targets take medians of: {(wl, what): [ratios]}."""
    pairs = {}
    if not any(runs.get(wl) for wl, _ in SYNC_WL):
        return pairs
    P("")
    P("== 4 KiB random sync write (O_DSYNC) latency, us; one write durable at a time ==")
    P("%-10s %-28s %9s %9s %9s %8s %8s" % ("threads", "config", "p50", "p99", "max",
                                           "IOPS", "p50 xraw"))
    for wl, wname in SYNC_WL:
        byc = runs.get(wl, {})
        raw50 = byc.get("raw", {}).get("clat_p50_us")
        first = True
        res["sync_write"][wl] = {}
        for cfg, cname in SYNC_CONFIGS:
            for n, r in reps_of(byc, cfg):
                r["p50_x_raw"] = ratio(r["clat_p50_us"], raw50)
                end = (metrics.get("hydrating_end/%s%s" % (wl, n))
                       if cfg == "cfs-hydrating" else None)
                if end:
                    r["hydrated_at_end"] = end
                res["sync_write"][wl][cfg + n] = r
                P("%-10s %-28s %9s %9s %9s %8.0f %8s%s" % (
                    wname if first else "", cname + n, fmt(r["clat_p50_us"], "%.0f"),
                    fmt(r["clat_p99_us"], "%.0f"), fmt(r["clat_max_us"], "%.0f"),
                    r["iops"], fmt(r["p50_x_raw"]),
                    "  (hydrated at the end: %s)" % end if end else ""))
                first = False

        def pair(cfg, ref, key, what):
            rs = []
            for n, r in reps_of(byc, cfg):
                v = ratio(r.get(key), byc.get(ref + n, {}).get(key))
                if v is not None:
                    rs.append(v)
            pairs[wl, what] = rs
            if rs:
                P("%s %s: %s (median %.2f)" % (wname, what, " ".join("%.2f" % x for x in rs),
                                            statistics.median(rs)))
        pair("cfs-hyd", "raw-near", "clat_p50_us", "hydrated p50 / raw DEST p50, pairs")
        pair("cfs-hydrating", "cfs-unhyd", "clat_p99_us", "hydrating p99 / idle p99, pairs")
    return pairs


def sync_write_targets(runs, pairs, target):
    for wl, wname in SYNC_WL:
        byc = runs.get(wl, {})
        if not byc:
            continue
        for what, limit, name in (
                ("hydrated p50 / raw DEST p50, pairs", 1.5,
                 "sync write %s hydrated p50 <= 1.5 x raw" % wname),
                ("hydrating p99 / idle p99, pairs", 2.0,
                 "sync write %s hydrating p99 <= 2 x idle p99" % wname)):
            rs = pairs.get((wl, what), [])
            v = statistics.median(rs) if rs else None
            sfx = ", median of %d pairs" % len(rs) if len(rs) > 1 else ""
            target(name + sfx, v, limit, v is not None and v <= limit)
        mx = [r["clat_max_us"] / 1000.0 for _, r in reps_of(byc, "cfs-hydrating")]
        v = max(mx) if mx else None
        target("sync write %s hydrating: no write over %d ms (max, ms)" % (wname, SYNC_MAX_MS),
               v, SYNC_MAX_MS, v is not None and v <= SYNC_MAX_MS)
        # unhydrated vs qemu's overlay: the median of the clonefs runs
        q = byc.get("qemu-cor", {})
        for key, limit, pname in (("clat_p50_us", 0.5, "p50"), ("clat_p99_us", 1.0, "p99")):
            cs = [r[key] for _, r in reps_of(byc, "cfs-unhyd") if r.get(key) is not None]
            v = ratio(statistics.median(cs) if cs else None, q.get(key))
            target("sync write %s unhydrated %s <= %.1f x qemu overlay" % (wname, pname, limit),
                   v, limit, v is not None and v <= limit)


def ext4_section(metrics, res, P):
    """ext4 on a loop device, copy + sync: returns the on/off speed ratios."""
    ratios = []
    if not any(k.startswith("ext4_s/") for k in metrics):
        return ratios
    size = metrics.get("ext4_payload_bytes", 0)
    P("")
    P("== ext4 on a loop device over the image: cp %d MiB + sync (s) ==" % (size >> 20))
    P("%-24s %9s %9s %9s %8s  %s" % ("config", "median s", "MiB/s", "x off", "x qemu",
                                     "all runs (s)"))

    def runs_of(cfg):
        out = []
        for n in REP_SUFFIXES:
            v = metrics.get("ext4_s/%s%s" % (cfg, n))
            if v is None:
                break
            out.append(v)
        return out
    off, on, qemu = runs_of("cfs-off"), runs_of("cfs-on"), runs_of("qemu")
    med = {k: statistics.median(v) if v else None
           for k, v in (("cfs-off", off), ("cfs-on", on), ("qemu", qemu))}
    for cfg, cname, vals in (("cfs-off", "clonefs, no hydration", off),
                             ("cfs-on", "clonefs, hydrating", on),
                             ("qemu", "qemu overlay", qemu)):
        if not vals:
            continue
        t = med[cfg]
        d = {"seconds": t, "samples": vals, "MiBps": size / t / 2**20 if t else None,
             "x_off_speed": ratio(med["cfs-off"], t), "x_qemu_speed": ratio(med["qemu"], t)}
        ends = [metrics.get("ext4_hydrated_end/%s%s" % (cfg, n)) for n in REP_SUFFIXES[:len(vals)]]
        if any(ends):
            d["hydrated_at_end"] = ends
        res["ext4_loop"][cfg] = d
        P("%-24s %9.2f %9.1f %9s %8s  %s%s" % (
            cname, t, d["MiBps"] or 0, fmt(d["x_off_speed"]), fmt(d["x_qemu_speed"]),
            " ".join("%.2f" % x for x in vals),
            "  (hydrated at the end: %s)" % " ".join(ends) if any(ends) else ""))
    ratios = [a / b for a, b in zip(off, on) if b]
    if ratios:
        P("hydrating speed / off, pairs: %s" % " ".join("%.2f" % r for r in ratios))
    return ratios


BOOT_MODES = (("asc", "clonefs, ascending order"), ("hints", "clonefs, reads as hints"),
              ("prefetch", "clonefs, prefetch= profile"), ("qemu", "qemu overlay, copy-on-read"))


def boot_section(metrics, res, P):
    """The boot set over NBD: read times by mode and delay, full copies."""
    if "boot/bytes" not in metrics:
        return
    b = res["boot_set"] = {"bytes": metrics["boot/bytes"], "files": metrics.get("boot/files"),
                           "source": metrics.get("boot/source"),
                           "profile_regions": metrics.get("boot/profile_regions"),
                           "record_read_s": metrics.get("boot_read_s/record")}
    P("")
    P("== boot set: %s files, %.1f MiB, read via loop+ext4 from a clone of an NBD "
      "SOURCE (2 ms/read, 40 MiB/s; %s) ==" % (b["files"], b["bytes"] / 2**20, b["source"]))
    P("%-30s %12s %12s %12s %10s" % ("config", "read @0s (s)", "read @5s (s)",
                                     "full copy (s)", "hint copies"))
    for mode, name in BOOT_MODES:
        row = {"read_s@0": metrics.get("boot_read_s/%s@0" % mode),
               "read_s@5": metrics.get("boot_read_s/%s@5" % mode),
               "full_s": metrics.get("boot_full_s/%s" % mode),
               "hint_copies@0": metrics.get("boot_hint_copies/%s@0" % mode)}
        b[mode] = row
        P("%-30s %12s %12s %12s %10s" % (name, fmt(row["read_s@0"]), fmt(row["read_s@5"]),
                                         fmt(row["full_s"]), fmt(row["hint_copies@0"], "%d")))


def boot_targets(res, target):
    b = res.get("boot_set")
    if not b:
        return
    t = {m: b[m] for m, _ in BOOT_MODES}
    v = ratio(t["asc"]["read_s@5"], t["prefetch"]["read_s@5"])
    target("boot set @5s: prefetch >= 3 x faster than ascending", v, 3.0,
           v is not None and v >= 3.0)
    v = ratio(t["qemu"]["read_s@5"], t["prefetch"]["read_s@5"])
    target("boot set @5s: prefetch >= 3 x faster than qemu", v, 3.0,
           v is not None and v >= 3.0)
    v = ratio(t["asc"]["read_s@0"], t["hints"]["read_s@0"])
    target("boot set @0s: hints >= 1.5 x faster than ascending", v, 1.5,
           v is not None and v >= 1.5)
    for mode in ("hints", "prefetch"):
        v = ratio(t[mode]["full_s"], t["asc"]["full_s"])
        target("full copy with %s <= 1.05 x ascending (time)" % mode, v, 1.05,
               v is not None and v <= 1.05)


def nbd_section(metrics, runs, res, P, target):
    """An NBD SOURCE (issue 24): hydration against nbdcopy, qemu-img convert
    and qemu's block-stream at 2 ms a read, and under a rate cap; 4 KiB read
    latency; the daemon's memory. Adds its targets."""
    size = metrics.get("meta", {}).get("size_bytes", 0)
    cap = metrics.get("nbd/rate_cap_MiBps")
    if not any(k.startswith("hyd_s/nbd") for k in metrics):
        return
    res["nbd"] = {}
    P("")
    P("== NBD SOURCE (nbdkit, unix socket): time to a full, durable copy (best run) ==")
    P("%-10s %-28s %9s %9s %10s %10s  %s" % ("server", "method", "best s", "MiB/s",
                                              "x nbdcopy", "x qemu-img", "all runs (s)"))
    for kind, kname in (("nbd2ms", "2 ms/read"), ("nbdrate", "%s MiB/s" % cap)):
        nc = metrics.get("hyd_s/%s/nbdcopy" % kind)
        qi = metrics.get("hyd_s/%s/qemu-img" % kind)
        for meth, mname in (("nbdcopy", "nbdcopy (libnbd)"), ("qemu-img", "qemu-img convert"),
                            ("qemu", "qemu block-stream, overlay"), ("cfs", "clonefs hydration")):
            t = metrics.get("hyd_s/%s/%s" % (kind, meth))
            if t is None:
                continue
            d = {"seconds": t, "MiBps": size / t / 2**20 if t else None,
                 "x_nbdcopy_speed": ratio(nc, t), "x_qemu_img_speed": ratio(qi, t),
                 "samples": metrics.get("hyd_samples/%s/%s" % (kind, meth))}
            res["nbd"].setdefault(kind, {})[meth] = d
            P("%-10s %-28s %9.2f %9.1f %10s %10s  %s" % (
                kname, mname, t, d["MiBps"] or 0, fmt(d["x_nbdcopy_speed"]),
                fmt(d["x_qemu_img_speed"]), " ".join("%.2f" % x for x in d["samples"] or [])))
    lat = runs.get("lat", {})
    P("4 KiB random read latency, O_DIRECT, QD1, 2 ms/read (us):")
    for cfg, cname in (("cfs-nbd-idle", "clonefs unhydrated, idle"),
                       ("cfs-nbd-during", "clonefs while hydrating"),
                       ("qemu-nbd-idle", "qemu overlay, NBD backing")):
        r = lat.get(cfg)
        if r:
            res["nbd"][cfg] = r
            P("  %-32s p50 %9s  p99 %9s  IOPS %7.0f" % (
                cname, fmt(r["clat_p50_us"], "%.1f"), fmt(r["clat_p99_us"], "%.1f"), r["iops"]))
    hwm = metrics.get("hwm_kb/cfs-nbd")
    if hwm is not None:
        res["nbd"]["hwm_kb"] = hwm
        P("  clonefs VmHWM after the NBD clone hydrated: %.1f MiB" % (hwm / 1024.0))

    def t_of(kind, meth):
        return metrics.get("hyd_s/%s/%s" % (kind, meth))
    v = ratio(t_of("nbd2ms", "nbdcopy"), t_of("nbd2ms", "cfs"))
    target("NBD 2 ms: hydration >= 0.8 x nbdcopy speed", v, 0.8, v is not None and v >= 0.8)
    v = ratio(t_of("nbd2ms", "qemu-img"), t_of("nbd2ms", "cfs"))
    target("NBD 2 ms: hydration >= 3 x qemu-img convert speed", v, 3.0,
           v is not None and v >= 3.0)
    t = t_of("nbdrate", "cfs")
    v = size / t / 2**20 / cap if t and cap else None
    target("NBD %s MiB/s cap: hydration >= 0.9 x the cap" % cap, v, 0.9,
           v is not None and v >= 0.9)
    v = ratio(lat.get("cfs-nbd-during", {}).get("clat_p99_us"),
              lat.get("cfs-nbd-idle", {}).get("clat_p99_us"))
    target("NBD p99 4k read latency while hydrating <= 2 x idle", v, 2.0,
           v is not None and v <= 2.0)
    st = metrics.get("nbd/status", "").split()
    regions = int(st[3].split("/")[1]) if len(st) > 3 else None
    if hwm is not None and regions:
        limit_kb = regions * 2 / 8 / 1024 + 8 * 1024
        target("memory cfs-nbd VmHWM <= 2 bits/region + 8 MiB (MiB)", hwm / 1024.0,
               limit_kb / 1024.0, hwm <= limit_kb)


def report(resdir, out):
    metrics = load_metrics(resdir)
    fiodir = os.path.join(resdir, "fio")
    runs = {}
    for name in sorted(os.listdir(fiodir)) if os.path.isdir(fiodir) else []:
        if not name.endswith(".json"):
            continue
        cfg, wl = name[:-5].split("@", 1)
        try:
            runs.setdefault(wl, {})[cfg] = fio_summary(os.path.join(fiodir, name))
        except (ValueError, KeyError, IndexError) as e:
            print("benchlib: cannot read %s: %s" % (name, e), file=sys.stderr)

    # Buffered writes: the figure includes the final flush (fsync after fio).
    for wl, byc in runs.items():
        for cfg, r in byc.items():
            flush = metrics.get("flush_s/%s@%s" % (cfg, wl))
            r["flush_s"] = flush
            r["bw_cached_MiBps"] = r["bw_MiBps"]
            if flush is not None:
                secs = r["runtime_ms"] / 1000.0 + flush
                r["bw_MiBps"] = r["io_bytes"] / secs / 2**20
                r["iops"] = r["iops"] * (r["runtime_ms"] / 1000.0) / secs

    res = {"meta": metrics.get("meta", {}), "workloads": {}, "hydration": {},
           "latency": {}, "sync_write": {}, "ext4_loop": {}, "memory": {},
           "large": {}, "targets": []}
    lines = []
    P = lines.append

    # -- workloads
    P("== Throughput (same files, same run; ratios: x raw / x passthrough_ll) ==")
    P("%-28s %-20s %10s %10s %7s %7s" % ("workload", "config", "MiB/s", "IOPS",
                                           "x raw", "x pt"))
    for wl, wname in WORKLOADS:
        byc = runs.get(wl, {})
        if not byc:
            continue
        res["workloads"][wl] = {}
        raw = byc.get("raw", {}).get("bw_MiBps")
        pt = byc.get("pt", {}).get("bw_MiBps")
        first = True
        for cfg, cname in CONFIGS:
            r = byc.get(cfg)
            if not r:
                continue
            r["x_raw"] = ratio(r["bw_MiBps"], raw)
            r["x_pt"] = ratio(r["bw_MiBps"], pt)
            res["workloads"][wl][cfg] = r
            P("%-28s %-20s %10.1f %10.0f %7s %7s" % (
                wname if first else "", cname, r["bw_MiBps"], r["iops"],
                fmt(r["x_raw"]), fmt(r["x_pt"])))
            first = False
    P("(buffered writes include the final fsync; cached-only MiB/s in results.json)")

    def bw(wl, cfg):
        return runs.get(wl, {}).get(cfg, {}).get("bw_MiBps")

    # pairs: clonefs / raw on the same file or / pt, back to back
    pair_ratios = {}
    for cfg, wl, ref, _ in PAIRS:
        rs = []
        for n in REP_SUFFIXES:
            a, b = bw(wl, cfg + n), bw(wl, ref + n)
            v = ratio(a, b)
            if v is None:
                break
            rs.append(v)
            res.setdefault("pairs", []).append(
                {"config": cfg + n, "workload": wl, "ref": ref + n,
                 "MiBps": a, "ref_MiBps": b, "ratio": v})
        pair_ratios[cfg, wl] = rs
        if len(rs) > 1:
            P("%s %s / %s, pairs: %s (median %.2f)" % (
                cfg, wl, ref, " ".join("%.2f" % r for r in rs), statistics.median(rs)))

    # -- hydration
    P("")
    P("== Time to a full, durable copy (cp --sparse=always + fsync = raw; best run) ==")
    P("%-10s %-26s %9s %9s %8s %8s  %s" % ("source", "method", "best s", "MiB/s",
                                            "x cp", "x pt-cp", "all runs (s)"))
    size = metrics.get("meta", {}).get("size_bytes", 0)
    for kind in ("dense", "sparse", "dense-warm"):
        cp = metrics.get("hyd_s/%s/cp" % kind)
        ptcp = metrics.get("hyd_s/%s/pt-cp" % kind)
        if not any(k.startswith("hyd_s/%s/" % kind) for k in metrics):
            continue
        res["hydration"][kind] = {}
        for meth, mname in (("cp", "cp (raw)"), ("pt-cp", "cp via passthrough_ll"),
                            ("qemu", "qemu block-stream"), ("cfs", "clonefs hydration")):
            t = metrics.get("hyd_s/%s/%s" % (kind, meth))
            if t is None:
                continue
            # speed ratio: time of cp / time of this
            d = {"seconds": t, "MiBps": size / t / 2**20 if t else None,
                 "x_cp_speed": ratio(cp, t), "x_ptcp_speed": ratio(ptcp, t),
                 "samples": metrics.get("hyd_samples/%s/%s" % (kind, meth))}
            res["hydration"][kind][meth] = d
            P("%-10s %-26s %9.2f %9.1f %8s %8s  %s" % (
                kind, mname, t, d["MiBps"] or 0, fmt(d["x_cp_speed"]),
                fmt(d["x_ptcp_speed"]),
                " ".join("%.2f" % x for x in d["samples"] or [])))
    for meth, mname in (("cfs", "clonefs"), ("qemu", "qemu block-stream")):
        v = metrics.get("hyd_s_after_load/dense/%s" % meth)
        if v is not None:
            res["hydration"].setdefault("dense-after-load", {})[meth] = {"seconds": v}
            P("%s dense again, after the pt/raw write workloads: %.2f s" % (mname, v))
    extra = metrics.get("hyd_under_load_s")
    if extra is not None:
        P("clonefs hydration while the latency probe ran: %.2f s" % extra)

    # -- latency
    P("")
    P("== 4 KiB random read latency, O_DIRECT, QD1 (us) ==")
    P("%-34s %9s %9s %9s %7s %7s" % ("config", "p50", "p99", "IOPS", "p99 xraw",
                                     "p99 xpt"))
    lat = runs.get("lat", {})
    rawp99 = lat.get("raw", {}).get("clat_p99_us")
    ptp99 = lat.get("pt", {}).get("clat_p99_us")
    for cfg, cname in (("raw", "raw file"), ("pt", "passthrough_ll"),
                       ("cfs-idle", "clonefs unhydrated, idle"),
                       ("cfs-during", "clonefs during hydration"),
                       ("cfs-idle-warm", "clonefs idle, SOURCE cached"),
                       ("cfs-during-warm", "clonefs hydrating, SOURCE cached"),
                       ("qemu-idle", "qemu overlay, idle"),
                       ("qemu-during", "qemu during block-stream")):
        r = lat.get(cfg)
        if not r:
            continue
        r["p99_x_raw"] = ratio(r["clat_p99_us"], rawp99)
        r["p99_x_pt"] = ratio(r["clat_p99_us"], ptp99)
        res["latency"][cfg] = r
        P("%-34s %9s %9s %9.0f %7s %7s" % (cname, fmt(r["clat_p50_us"], "%.1f"),
                                           fmt(r["clat_p99_us"], "%.1f"), r["iops"],
                                           fmt(r["p99_x_raw"]), fmt(r["p99_x_pt"])))
    # repeated pairs, cold and SOURCE cached: cfs-idle[-warm].N / cfs-during[-warm].N
    lat_ratios = {}
    for kind, what in (("", "cold"), ("-warm", "SOURCE cached")):
        ratios = lat_ratios[kind] = []
        for n in REP_SUFFIXES:
            a = lat.get("cfs-idle" + kind + n, {}).get("clat_p99_us")
            b = lat.get("cfs-during" + kind + n, {}).get("clat_p99_us")
            if a is None or b is None:
                if n:
                    break
                continue
            ratios.append(b / a)
            res["latency"].setdefault("pairs" + kind, []).append(
                {"idle_p99_us": a, "during_p99_us": b, "ratio": b / a})
        if len(ratios) > 1:
            P("clonefs %s pairs, p99 during/idle: %s (median %.2f)" % (
                what, " ".join("%.2f" % r for r in ratios),
                sorted(ratios)[len(ratios) // 2]))
    for k in ("cfs", "cfs-warm", "qemu"):
        f = metrics.get("during_frac/%s" % k)
        if f is not None:
            P("%s: probe ran %.2f s of a copy that took %.2f s (%.0f%% of the probe "
              "overlapped the copy)" % (k, metrics.get("during_probe_s/%s" % k, 0),
                                        metrics.get("during_copy_s/%s" % k, 0), 100 * f))
            res["latency"]["%s-overlap" % k] = f

    sync_pairs = sync_write_section(runs, metrics, res, P)
    ext4_pairs = ext4_section(metrics, res, P)
    boot_section(metrics, res, P)

    # -- memory, large geometry
    P("")
    P("== Memory (VmHWM) and a 16 TiB geometry ==")
    for key, name in (("hwm_kb/cfs-hyd", "clonefs, 1 GiB clone after hydration + workloads"),
                      ("hwm_kb/cfs-unhyd", "clonefs, 1 GiB clone, unhydrated reads"),
                      ("hwm_kb/pt", "passthrough_ll after workloads"),
                      ("hwm_kb/qemu-hyd", "qemu-storage-daemon after workloads"),
                      ("hwm_kb/cfs-16t", "clonefs, 16 TiB at 4 KiB regions, open")):
        v = metrics.get(key)
        if v is not None:
            res["memory"][key.split("/", 1)[1]] = v
            P("%-52s %10.1f MiB" % (name, v / 1024.0))
    for key, name in (("large/size", "16 TiB source size (bytes)"),
                      ("large/regions", "regions"),
                      ("large/open_s", "mount start to image visible (s)"),
                      ("large/reopen_s", "remount with existing META (s)"),
                      ("large/umount_s", "umount + daemon exit (s)"),
                      ("large/meta_alloc_kb", "META allocated (KiB)")):
        v = metrics.get(key)
        if v is not None:
            res["large"][key.split("/", 1)[1]] = v
            P("%-52s %14s" % (name, v if isinstance(v, int) else "%.3f" % v))

    # -- targets
    targets = []

    def target(name, value, limit, ok):
        targets.append({"target": name, "value": value, "limit": limit,
                        "pass": bool(ok) if value is not None else None})

    def wl_ratio(wl, cfg, ref):
        return ratio(bw(wl, cfg), bw(wl, ref))

    # The median of the pairs run back to back (README).
    for cfg, wl, ref, limit in PAIRS:
        rs = pair_ratios[cfg, wl]
        v = statistics.median(rs) if rs else None
        what = ", median of %d pairs" % len(rs) if len(rs) > 1 else ""
        target("%s %s >= %.2f x %s%s" % (cfg, wl, limit, ref, what), v, limit,
               v is not None and v >= limit)
    for cfg in ("cfs-hyd", "cfs-unhyd"):
        for wl in DIRECT_WL:
            q = QEMU_PEER[cfg]
            v = wl_ratio(wl, cfg, q)
            target("%s %s >= 1.5 x %s" % (cfg, wl, q), v, 1.5,
                   v is not None and v >= 1.5)
        v = wl_ratio("seqread-direct", cfg, "raw")
        target("%s seqread-direct >= 0.5 x raw" % cfg, v, 0.5, v is not None and v >= 0.5)
    cp = metrics.get("hyd_s/dense/cp")
    cd = metrics.get("hyd_s/dense/cfs")
    cs = metrics.get("hyd_s/sparse/cfs")
    v = ratio(cp, cd)
    target("hydration dense >= 0.90 x cp speed", v, 0.90, v is not None and v >= 0.90)
    v = ratio(cd, cs)
    target("hydration 90%-sparse >= 5 x faster than dense", v, 5.0,
           v is not None and v >= 5.0)
    for sfx, what in (("", "cold"), ("-warm", "SOURCE cached")):
        v = ratio(lat.get("cfs-during" + sfx, {}).get("clat_p99_us"),
                  lat.get("cfs-idle" + sfx, {}).get("clat_p99_us"))
        if v is None and sfx:
            continue
        if len(lat_ratios[sfx]) > 1:
            v = sorted(lat_ratios[sfx])[len(lat_ratios[sfx]) // 2]
            what += ", median of %d pairs" % len(lat_ratios[sfx])
        target("p99 4k read latency during hydration <= 2 x idle (%s)" % what,
               v, 2.0, v is not None and v <= 2.0)
    sync_write_targets(runs, sync_pairs, target)
    v = statistics.median(ext4_pairs) if ext4_pairs else None
    target("ext4-on-loop copy+sync hydrating >= 0.90 x hydration off (speed%s)" % (
        ", median of %d pairs" % len(ext4_pairs) if len(ext4_pairs) > 1 else ""),
        v, 0.90, v is not None and v >= 0.90)
    # Memory: at most 2 bits per region plus a fixed few MiB (taken as 8).
    # the 1 GiB clones' region count, from the hydrated one's status line
    st = metrics.get("status/cfs-hyd", "").split()
    regions_1g = int(st[3].split("/")[1]) if len(st) > 3 else None
    for key, regions in (("cfs-unhyd", regions_1g), ("cfs-hyd", regions_1g),
                         ("cfs-16t", metrics.get("large/regions"))):
        v = metrics.get("hwm_kb/" + key)
        if v is None or not regions:
            continue
        limit_kb = regions * 2 / 8 / 1024 + 8 * 1024
        target("memory %s VmHWM <= 2 bits/region + 8 MiB (MiB)" % key, v / 1024.0,
               limit_kb / 1024.0, v <= limit_kb)
    boot_targets(res, target)
    nbd_section(metrics, runs, res, P, target)
    res["targets"] = targets

    P("")
    P("== Targets ==")
    npass = sum(1 for t in targets if t["pass"])
    for t in targets:
        state = "PASS" if t["pass"] else ("MISS" if t["pass"] is False else "N/A ")
        P("%s  %-58s %s" % (state, t["target"], fmt(t["value"], "%.2f")))
    P("%d of %d targets met" % (npass, len(targets)))
    text = "\n".join(lines)
    print(text)
    res["table"] = text
    res["metrics"] = {k: v for k, v in metrics.items() if k != "meta"}
    with open(out, "w") as f:
        json.dump(res, f, indent=1, sort_keys=True)
        f.write("\n")


def main():
    if len(sys.argv) < 2:
        die(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "mksparse":
        mksparse(args[0], int(args[1]), float(args[2]), int(args[3]))
    elif cmd == "qmp":
        qmp_main(args)
    elif cmd == "report":
        report(args[0], args[1])
    else:
        die("unknown command %s" % cmd)


if __name__ == "__main__":
    main()
