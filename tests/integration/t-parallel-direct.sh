#!/bin/bash
# O_DIRECT writes from several threads reach the daemon together (issue 7):
# the open reply carries FOPEN_PARALLEL_DIRECT_WRITES, without which the
# kernel holds the image's inode lock across each direct write, so a VM
# whose qemu writes from a thread pool (cache=none, aio=threads) would get
# one write at a time. Seen by stopping the daemon: the writes then wait in
# the kernel, and the connection counts how many were sent. While clonefs
# wait watches the image too, as a script staging a VM would have it: its
# open must not put the writes back under the lock (a cached open does).
. "$(dirname "$0")/lib.sh"

WRITERS=4
make_source "$T/src" 8
mount_clone_fg "$T/src" "$T/dest" "$T/meta" "$T/m" no_hydration
poll 10 test -e "$T/m/image" || die "image did not appear in $T/m"
fusectl_up || die "cannot mount fusectl on /sys/fs/fuse/connections"
dev=$(mountpoint -d "$T/m")
waiting=/sys/fs/fuse/connections/${dev#*:}/waiting
[ -r "$waiting" ] || die "no fusectl entry $waiting for $T/m"

# Each writer writes 4 KiB of its own byte into its own region (a partial
# write: the region is copied first), after the test says go. Processes, not
# Python threads: the lock in question is the inode's, the same for both.
cat > "$T/writers.py" <<'PY'
import mmap, os, sys
image, go, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
r, w = os.pipe()
kids = []
for i in range(n):
    pid = os.fork()
    if pid == 0:
        os.close(w)
        fd = os.open(image, os.O_RDWR | os.O_DIRECT)
        buf = mmap.mmap(-1, 4096)  # page aligned, as O_DIRECT wants
        buf.write(bytes([0x41 + i]) * 4096)
        os.write(1, b"ready\n")
        os.read(r, 1)  # returns at EOF: when the parent closes w
        os._exit(0 if os.pwrite(fd, buf, i * 65536 + 4096) == 4096 else 1)
    kids.append(pid)
os.close(r)
with open(go) as f:
    f.read()
os.close(w)
ok = all(os.waitpid(k, 0)[1] == 0 for k in kids)
print("done" if ok else "failed", flush=True)
PY
# clonefs wait, hydration being off, waits until it is ended. Once it holds
# the image open it is stopped, so that its status reads and polls add
# nothing to the count below.
"$CLONEFS" wait "$T/m" > /dev/null 2>&1 &
waiter=$!
_pids+=("$waiter")
holds_image() { ls -l /proc/$waiter/fd 2>/dev/null | grep -q "$T/m/image"; }
poll 10 holds_image || die "clonefs wait did not open the image"
stop_process "$waiter" || die "clonefs wait did not stop"

mkfifo "$T/go"
python3 "$T/writers.py" "$T/m/image" "$T/go" $WRITERS > "$T/writers.out" &
writers=$!
_pids+=("$writers")
opened() { [ "$(grep -c ready "$T/writers.out")" = $WRITERS ]; }
poll 10 opened || die "writers did not open the image"
idle() { [ "$(cat "$waiting")" = 0 ]; }
poll 10 idle || die "requests in flight before the writes: $(cat "$waiting")"

# Nothing below may fail before the daemon runs again (cleanup would
# have to abort the stopped connection).
stop_process "$DAEMON_PID" || { kill -CONT "$DAEMON_PID"; die "the daemon did not stop"; }
echo go > "$T/go"
all_sent() { [ "$(cat "$waiting")" -ge $WRITERS ]; }
poll 10 all_sent && sent=$WRITERS || sent=$(cat "$waiting")
kill -CONT "$DAEMON_PID"
log "$sent of $WRITERS direct writes were sent to the stopped daemon"
reap "$writers" || die "writers failed"
grep -q done "$T/writers.out" || die "writers did not finish"
[ "$sent" = $WRITERS ] ||
	die "only $sent of $WRITERS concurrent O_DIRECT writes reached the daemon"

# and every write landed where it was meant to, the rest is SOURCE
cp "$T/src" "$T/expect"
for ((i = 0; i < WRITERS; i++)); do
	printf "%4096s" "" | tr ' ' "$(printf "\\x$(printf %x $((0x41 + i)))")" |
		dd of="$T/expect" bs=4096 seek=$((i * 16 + 1)) conv=notrunc status=none
done
cmp "$T/expect" "$T/m/image" || die "image differs from the expected writes"
kill "$waiter"
kill -CONT "$waiter"
reap "$waiter" || true
unmount_clone "$T/m" "$T/meta"
pass
