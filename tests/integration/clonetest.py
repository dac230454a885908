"""clonetest.py - mounting, killing and reading a clone from python tests
(syncmatrix.py, lostwrites.py). The shell side (lib.sh) owns the temp dir
and its cleanup; every daemon started here is also written to PIDFILE, so
the shell's trap can kill it if python itself is killed.
"""
import errno
import json
import os
import random
import signal
import subprocess
import time

BLK = 4096


class Fail(Exception):
    """An assertion of a case failed: the case is reported, the run goes on."""


def deadline_poll(cond, secs, what):
    end = time.monotonic() + secs
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > end:
            raise Fail("timed out after %gs waiting for %s" % (secs, what))
        time.sleep(0.02)


def call(fn, *args):
    """0, or the errno fn(*args) failed with."""
    try:
        fn(*args)
        return 0
    except OSError as e:
        return e.errno


def ename(e):
    """An errno's name, "0" for none."""
    return errno.errorcode.get(e, str(e)) if e else "0"


def is_mounted(mnt):
    with open("/proc/mounts") as f:
        return any(l.split()[1] == mnt for l in f)


def sigterm_exits():
    """Turn SIGTERM (the runner's timeout) into SystemExit, so finally
    blocks unmount and kill what they started."""
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(SystemExit(143)))


def write_source(work, size, seed):
    """SOURCE for a test: @size reproducible random bytes in @work/src.
    Returns its path and its bytes."""
    src = os.path.join(work, "src")
    source = random.Random(seed).randbytes(size)
    with open(src, "wb") as f:
        f.write(source)
    return src, source


class Clone:
    """One SOURCE/DEST/META set and its mount at MNT."""

    def __init__(self, top, work, src, name):
        self.top = top
        self.helper = os.environ.get("MOUNT_CLONEFS", top + "/mount/mount.clonefs")
        self.tool = os.environ.get("CLONEFS", top + "/src/clonefs")
        self.src = src
        d = os.path.join(work, name)
        os.makedirs(d, exist_ok=True)
        self.dir = d
        self.dest, self.meta = d + "/dest", d + "/meta"
        self.mnt = d + "/m"
        self.image = self.mnt + "/image"
        self.log = d + "/daemon.log"
        self.pidfile = os.path.join(work, "pids")
        os.makedirs(self.mnt, exist_ok=True)
        self.daemon = None

    def mount(self, opts, env=None):
        e = dict(os.environ)
        e.update(env or {})
        with open(self.log, "ab") as log:
            self.daemon = subprocess.Popen(
                [self.helper, self.src, self.dest, self.meta, self.mnt, "-f", "-o", opts],
                stderr=log, env=e)
        with open(self.pidfile, "a") as f:
            f.write("%d\n" % self.daemon.pid)
        try:
            deadline_poll(lambda: self.daemon.poll() is not None or os.path.exists(self.image),
                          10, "the image of " + self.mnt)
        except Fail:
            self.kill()
            raise
        if self.daemon.poll() is not None:
            raise Fail("mount failed (exit %d): %s" % (self.daemon.returncode, self.log_tail()))

    def log_tail(self, n=3):
        try:
            with open(self.log, errors="replace") as f:
                return " | ".join(l.strip() for l in f.readlines()[-n:])
        except OSError:
            return ""

    def kill(self):
        """SIGKILL the daemon (the kernel aborts its connection when its
        /dev/fuse fd closes) and lazily unmount what is left."""
        if self.daemon and self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGKILL)
        if self.daemon:
            self.daemon.wait()
        if is_mounted(self.mnt):
            subprocess.run(["umount", "-l", self.mnt], check=False)

    def unmount(self):
        """Clean unmount: the daemon commits and exits."""
        subprocess.run(["umount", self.mnt], check=True)
        rc = self.daemon.wait(timeout=60)
        if rc:
            raise Fail("daemon exited with %d after umount" % rc)

    def status(self):
        return os.getxattr(self.image, "user.clonefs.status").decode().strip()

    def json_status(self):
        return json.loads(os.getxattr(self.image, "user.clonefs.json").decode())

    def mode(self):
        s = self.status()
        return "Fail" if s == "Fail" else s.split()[-1]

    def faults_injected(self):
        """How many faults the daemon has logged (blockio's running count)."""
        n = 0
        try:
            with open(self.log, errors="replace") as f:
                for line in f:
                    i = line.find("fault injected #")
                    if i >= 0:
                        n = int("".join(c for c in line[i + 16:i + 26].split(":")[0]
                                        if c.isdigit()) or 0)
        except OSError:
            pass
        return n

    def check(self):
        """clonefs check -n; when needs_check was recorded, clonefs check.
        Returns a note saying which ran."""
        r = subprocess.run([self.tool, "check", "-n", self.meta], capture_output=True, text=True)
        if r.returncode:
            raise Fail("clonefs check -n: %s%s" % (r.stdout, r.stderr))
        d = subprocess.run([self.tool, "dump", self.meta], capture_output=True, text=True)
        if d.returncode:
            raise Fail("clonefs dump: %s" % d.stderr)
        if json.loads(d.stdout)["needs_check"]:
            r = subprocess.run([self.tool, "check", self.meta], capture_output=True, text=True)
            if r.returncode:
                raise Fail("clonefs check: %s%s" % (r.stdout, r.stderr))
            return "needs_check cleared by clonefs check"
        return "clean"

    def read_image(self, off, length):
        """Remount read-only and read [off, off + length)."""
        self.mount("ro")
        try:
            fd = os.open(self.image, os.O_RDONLY)
            try:
                return os.pread(fd, length, off)
            finally:
                os.close(fd)
        finally:
            self.unmount()
