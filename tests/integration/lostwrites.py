#!/usr/bin/env python3
"""lostwrites.py - errors that lose acknowledged writes are never forgotten
(spec 2.5b, 4.6).

Each scenario mounts a fresh no_hydration clone with a faults file
(CLONEFS_FAULTS_FILE), opens the image twice (fd1 buffered O_RDWR, fd2
O_RDWR|O_DIRECT), writes block W0 and fsyncs it (acknowledged for good),
sets one fault rule, writes W1 into an unhydrated region through fd1 (a
partial write: it hydrates, and its bit waits for the next commit), and
lets the commit hit the fault: through fsync(fd1), by waiting for the
periodic commit, or by an O_DSYNC write (fd4) into another unhydrated
region (or, for a DEST flush error, into W0's hydrated one), which
flushes and commits at once and so must fail. Then:
  - fsync(fd1) fails with EIO, once; fdatasync(fd2) fails with EIO, once;
    the next fsync of each succeeds (the clone can still flush DEST);
  - so do the files open at the error that never wrote: an O_RDONLY open
    (fsync, fdatasync) and a shared map of an O_RDWR open (msync(MS_SYNC));
  - fd3, opened after the error, does not see it;
  - status: JSON lost_writes >= 1; mode ro (or Fail) after a META error;
  - faults cleared, unmounted, META checked (clonefs check when
    needs_check was recorded), remounted: W0 reads back.
The META write rule is tried at every write of the commit (after=N,
N = 0, 1, ... until a commit gets through with no fault). With four
O_DSYNC writers at once ("group": their commits may be shared), every
synchronous write the failing commit was to make durable must fail with
EIO, and every one that returned 0 must read back after remount. A DEST write
error during W1's hydration fails W1 itself: nothing acknowledged is
lost, so no later fsync fails and lost_writes stays 0.

One line per scenario; "lostwrites: N scenarios, M failed" last.
usage: lostwrites.py TOP WORKDIR
"""
import errno
import mmap
import os
import random
import re
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clonetest import (BLK, Clone, Fail, call, deadline_poll, ename,  # noqa: E402
                       sigterm_exits, write_source)

REGION = 65536
SIZE = 2 << 20
W0_OFF = 3 * REGION + BLK
W1_OFF = 7 * REGION + 2 * BLK
W2_OFF = 11 * REGION + 5 * BLK


class Scenario:
    def __init__(self, top, work, src, source, rule, trigger, seq):
        self.name = "%s/%s" % (rule or "none", trigger)
        self.rule, self.trigger = rule, trigger
        self.c = Clone(top, work, src, "s%d" % seq)
        self.source = source
        self.faults = os.path.join(work, "faults")
        self.problems = []
        self.notes = []
        self.rng = random.Random(self.name)

    def want(self, cond, text):
        if not cond:
            self.problems.append(text)

    def set_faults(self, rule):
        with open(self.faults + ".tmp", "w") as f:
            f.write(rule + "\n" if rule else "")
        os.rename(self.faults + ".tmp", self.faults)

    def open_pair(self, fds):
        """Open the image buffered and O_DIRECT (into @fds, for the caller
        to close), and write W0 through the first with an fsync that must
        succeed: the baseline no fault may take back."""
        c = self.c
        fd1 = os.open(c.image, os.O_RDWR)
        fds.append(fd1)
        fd2 = os.open(c.image, os.O_RDWR | os.O_DIRECT)
        fds.append(fd2)
        self.open_bystanders(fds)
        self.w0 = self.rng.randbytes(BLK)
        os.pwrite(fd1, self.w0, W0_OFF)
        if call(os.fsync, fd1):
            raise Fail("fsync of W0 failed before any fault")
        return fd1, fd2

    def open_bystanders(self, fds):
        """Files open at the error that never wrote: a read-only open and a
        shared map of a read-write one, synced the way their users would
        (fsync, fdatasync, msync(MS_SYNC)). Each is an open file of its own
        and must hear of the error once too. (A shared map of a read-only
        open is no case: the kernel drops VM_SHARED from it, so its msync
        never reaches the file system, on any file system.)"""
        c = self.c
        fd_ro = os.open(c.image, os.O_RDONLY)
        fds.append(fd_ro)
        fd_m = os.open(c.image, os.O_RDWR)
        fds.append(fd_m)
        m_rw = mmap.mmap(fd_m, BLK, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.maps = [m_rw]
        self.bystanders = [("fsync(O_RDONLY fd)", os.fsync, fd_ro),
                           ("fdatasync(O_RDONLY fd)", os.fdatasync, fd_ro),
                           ("msync(MS_SYNC) of an O_RDWR shared map", m_rw.flush)]

    def close_all(self, fds):
        """The maps (each holds a file of its own), then @fds."""
        for m in getattr(self, "maps", []):
            m.close()
        self.maps = []
        for fd in fds:
            os.close(fd)

    def check_bystanders(self, want_first):
        """The first sync of each bystander's file gets @want_first (fd_ro's
        fsync and fdatasync share one file: the second gets 0)."""
        seen = set()
        for name, fn, *args in self.bystanders:
            key = args[0] if args else fn
            want = 0 if key in seen else want_first
            seen.add(key)
            r = call(fn, *args)
            self.want(r == want, "%s, open at the error: %s, want %s" % (name, ename(r),
                                                                        ename(want)))
            r = call(fn, *args)
            self.want(r == 0, "%s again: %s, want 0 (reported once)" % (name, ename(r)))

    def run(self):
        """Returns False when the rule never fired (a META write past the
        commit's last)."""
        if self.trigger == "group":
            return self.run_group()
        c = self.c
        self.set_faults("")
        period = "commit_period=200ms" if self.trigger == "periodic" else "commit_period=3600"
        c.mount("no_hydration," + period, env={"CLONEFS_FAULTS_FILE": self.faults})
        fds = []
        try:
            fd1, fd2 = self.open_pair(fds)
            self.set_faults(self.rule)
            w1 = self.rng.randbytes(BLK)
            dest_write = self.rule.startswith("dest:write")
            w1_err = call(os.pwrite, fd1, w1, W1_OFF)
            if dest_write:
                return self.check_failed_write(fds, w1_err)
            if w1_err:
                raise Fail("W1 failed (%s) though the rule hits only the commit"
                           % ename(w1_err))
            if self.trigger == "fsync":
                first = call(os.fsync, fd1)
            elif self.trigger.startswith("o_dsync"):
                # a synchronous write flushes DEST and commits at once (spec
                # 2.5a): it meets the fault, so it must fail, and W1 is lost
                # with it. Into a hydrated region (W0's), only the flush
                # stands between it and durability.
                fd4 = os.open(c.image, os.O_RDWR | os.O_DSYNC)
                fds.append(fd4)
                w2_off = W0_OFF + BLK if self.trigger == "o_dsync-hydrated" else W2_OFF
                w2 = call(os.pwrite, fd4, self.rng.randbytes(BLK), w2_off)
                self.want(w2 == errno.EIO, "O_DSYNC write meeting the fault: %s, want EIO"
                          % ename(w2))
                first = call(os.fsync, fd1)
                self.notes.append("then fsync(fd4): %s" % ename(call(os.fsync, fd4)))
            else:
                # a write number past the periodic commit's last never
                # fires: status commits and checkpoints as the timer does,
                # so after it the fault has fired or never will
                end = time.monotonic() + (2 if self.loop else 10)
                while c.faults_injected() == 0 and time.monotonic() < end:
                    time.sleep(0.02)
                c.status()  # returns after the failed commit is over
                if c.faults_injected() == 0 and not self.loop:
                    raise Fail("the periodic commit did not meet the fault")
                first = call(os.fsync, fd1)
            if c.faults_injected() == 0:
                if first:
                    raise Fail("fsync failed with %s and no fault was injected" % ename(first))
                return False
            self.check_reported(fds, first)
        finally:
            self.close_all(fds)
            self.set_faults("")
        self.finish()
        return True

    def check_reported(self, fds, first):
        c = self.c
        fd1, fd2 = fds[:2]
        self.want(first == errno.EIO, "fsync(fd1) after the error: %s, want EIO" % ename(first))
        r = call(os.fdatasync, fd2)
        self.want(r == errno.EIO, "fdatasync(fd2), open at the error: %s, want EIO" % ename(r))
        r = call(os.fsync, fd1)
        self.want(r == 0, "second fsync(fd1): %s, want 0 (the error reported once)" % ename(r))
        r = call(os.fdatasync, fd2)
        self.want(r == 0, "second fdatasync(fd2): %s, want 0" % ename(r))
        self.check_bystanders(errno.EIO)
        fd3 = os.open(c.image, os.O_RDWR)
        fds.append(fd3)
        r = call(os.fsync, fd3)
        self.want(r == 0, "fsync(fd3), opened after the error: %s, want 0" % ename(r))
        mode = c.mode()
        if self.rule.startswith("meta"):
            self.want(mode in ("ro", "Fail"), "mode after a failed commit: %s, want ro" % mode)
        js = c.json_status()
        lost = js.get("lost_writes")
        self.want(lost is not None and lost >= 1,
                  "JSON lost_writes: %s, want >= 1" % ("missing" if lost is None else lost))
        self.notes.append("mode %s, lost_writes %s" % (mode, lost))

    def check_failed_write(self, fds, w1_err):
        """dest:write: W1's hydration copy fails, so W1 fails: nothing
        acknowledged was lost, no later fsync may fail."""
        c = self.c
        fd1, fd2 = fds[:2]
        try:
            self.want(c.faults_injected() >= 1, "no fault injected")
            self.want(w1_err == errno.EIO, "W1 during a failing hydration: %s, want EIO"
                      % ename(w1_err))
            r = call(os.fsync, fd1)
            self.want(r == 0, "fsync(fd1) after a failed (unacknowledged) write: %s, want 0"
                      % ename(r))
            r = call(os.fdatasync, fd2)
            self.want(r == 0, "fdatasync(fd2): %s, want 0" % ename(r))
            self.check_bystanders(0)
            mode = c.mode()
            self.want(mode == "rw", "mode after a DEST write error: %s, want rw" % mode)
            lost = c.json_status().get("lost_writes")
            self.want(not lost, "JSON lost_writes: %s, want 0: nothing acknowledged was lost"
                      % lost)
            self.notes.append("mode %s, lost_writes %s" % (mode, lost))
        finally:
            self.close_all(fds)
            fds.clear()
            self.set_faults("")
        self.finish()
        return True

    def run_group(self):
        """Four O_DSYNC writers (two buffered, two O_DIRECT), each into its
        own unhydrated regions, whose commits may be shared: two writes
        each, then W1 (buffered, acknowledged, uncommitted) and the fault,
        then three more each, at once. A commit meeting the fault must
        fail every write it was to make durable; every write that
        returned 0 must read back after check and remount."""
        c = self.c
        self.set_faults("")
        c.mount("no_hydration,commit_period=3600", env={"CLONEFS_FAULTS_FILE": self.faults})
        nthreads, before, after = 4, 2, 3
        phase1 = threading.Barrier(nthreads + 1)
        phase2 = threading.Barrier(nthreads + 1)
        results = []  # (offset, data, errno)
        lock = threading.Lock()

        def writer(t):
            flags = os.O_RDWR | os.O_DSYNC | (os.O_DIRECT if t >= 2 else 0)
            fd = os.open(c.image, flags)
            buf = mmap.mmap(-1, BLK)
            rng = random.Random("%s/%d" % (self.name, t))
            try:
                for i in range(before + after):
                    if i == before:
                        phase1.wait(30)
                        phase2.wait(30)
                    off = (10 + t * (before + after) + i) * REGION + rng.randrange(16) * BLK
                    data = rng.randbytes(BLK)
                    buf[:] = data
                    err = call(os.pwrite, fd, buf, off)
                    with lock:
                        results.append((off, data, err))
            finally:
                os.close(fd)

        threads = [threading.Thread(target=writer, args=(t,)) for t in range(nthreads)]
        fds = []
        try:
            fd1, fd2 = self.open_pair(fds)
            for t in threads:
                t.start()
            phase1.wait(30)
            with lock:
                early = [r for r in results if r[2]]
            self.want(not early, "O_DSYNC writes failed before any fault: %s"
                      % ", ".join(ename(r[2]) for r in early))
            os.pwrite(fd1, self.rng.randbytes(BLK), W1_OFF)
            self.set_faults(self.rule)
            phase2.wait(30)
            for t in threads:
                t.join(60)
            failed = [r for r in results if r[2]]
            acked = [r for r in results if not r[2]]
            if c.faults_injected() == 0:
                raise Fail("the fault never fired: %d O_DSYNC writes acknowledged without "
                           "a commit or DEST flush" % len(acked))
            self.want(failed and all(r[2] == errno.EIO for r in failed),
                      "synchronous writes meeting the fault: %s, want some EIO, no other error"
                      % (", ".join(sorted({ename(r[2]) for r in failed})) or "all 0"))
            self.check_reported(fds, call(os.fsync, fd1))
            self.notes.insert(0, "%d of %d O_DSYNC writes acknowledged" % (len(acked),
                                                                          len(results)))
        finally:
            self.close_all(fds)
            self.set_faults("")
        self.finish()
        image = c.read_image(0, SIZE)
        for off, data, _ in acked:
            got = image[off:off + BLK]
            if got != data:
                self.want(False, "O_DSYNC write at %d acknowledged, lost after check and "
                          "remount (%s)" % (off, "reads SOURCE" if got == self.source[off:off + BLK]
                                            else "other data"))
                break
        return True

    def finish(self):
        c = self.c
        c.unmount()
        note = c.check()
        if note != "clean":
            self.notes.append(note)
        got = c.read_image(W0_OFF, BLK)
        self.want(got == self.w0, "W0, fsync-acknowledged before the fault, is lost after "
                  "check and remount")


def scenarios(meta_writes):
    """meta_writes[0]: the META writes of an fsync's commit (a journal
    record), found by the fsync runs. The periodic commit writes a record
    and then checkpoints (trees, superblock): its runs go on until a write
    number never meets a fault, and fail each of its three META flushes."""
    for trigger in ("fsync", "periodic"):
        for n in range(32):
            yield "meta:write:eio:after=%d:once" % n, trigger, True
        yield "meta:flush:eio:once", trigger, False
        if trigger == "periodic":
            yield "meta:flush:eio:after=1:once", trigger, False
            yield "meta:flush:eio:after=2:once", trigger, False
        yield "dest:flush:eio:once", trigger, False
    for rule in ("meta:write:eio:once", "dest:flush:eio:once"):
        yield rule, "o_dsync", False
    for n in range(meta_writes[0]):
        yield "meta:write:eio:after=%d:once" % n, "group", False
    yield "dest:flush:eio:once", "group", False
    yield "dest:flush:eio:once", "o_dsync-hydrated", False
    yield "dest:write:eio:once", "write", False


def main():
    sigterm_exits()
    top, work = sys.argv[1], sys.argv[2]
    only = re.compile(os.environ.get("LOST_CASES", ""))
    src, source = write_source(work, SIZE, 2)
    n = failed = seq = 0
    done_loop = set()
    meta_writes = [0]
    for rule, trigger, loop in scenarios(meta_writes):
        if loop and trigger in done_loop:
            continue
        seq += 1
        s = Scenario(top, work, src, source, rule, trigger, seq)
        s.loop = loop
        if not only.search(s.name):
            continue
        try:
            fired = s.run()
        except (Fail, OSError, threading.BrokenBarrierError) as e:
            s.c.kill()
            s.problems.append(str(e))
            fired = True
        if not fired:
            s.c.kill()
            if loop:
                done_loop.add(trigger)
                print("--   %s: the commit has fewer META writes: no fault, fsync 0" % s.name)
                continue
            s.problems.append("the fault never fired: nothing flushed or committed")
        if loop and trigger == "fsync":
            meta_writes[0] = int(rule.split("after=")[1].split(":")[0]) + 1
        n += 1
        if s.problems:
            failed += 1
            print("FAIL %s: %s" % (s.name, "; ".join(s.problems)), flush=True)
        else:
            print("ok   %s (%s)" % (s.name, "; ".join(s.notes)), flush=True)
    print("lostwrites: %d scenarios, %d failed" % (n, failed))
    return 1 if failed or not n else 0


if __name__ == "__main__":
    sys.exit(main())
