#!/bin/bash
# The HTTP chain (issue 24): a raw ext4 image on a local HTTP server
# (127.0.0.1, Range requests), nbdkit's curl plugin in front of it, clonefs
# in front of that, and ext4 mounted from a loop device over the image while
# it hydrates: files read back intact, a file written and synced; after the
# copy, DEST is a clean ext4 holding both.
# timeout: 120
. "$(dirname "$0")/lib.sh"

# a 48 MiB ext4 with a few files
truncate -s 48M "$T/disk.img"
mkfs.ext4 -q -F -E nodiscard "$T/disk.img"
new_loop "$T/disk.img"
mount_fs "$LOOP" "$T/fs"
for i in 1 2 3 4; do head -c $((3 << 20)) /dev/urandom > "$T/fs/file$i"; done
(cd "$T/fs" && md5sum file* > "$T/sums")
umount_fs "$T/fs"
free_loop "$LOOP"

# An HTTP server that answers Range requests (python's http.server does not)
cat > "$T/rangeserver.py" <<'PY'
import http.server, os, re, sys
root, portfile = sys.argv[1], sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass
    def head(self):
        path = os.path.join(root, os.path.basename(self.path))
        if not os.path.isfile(path):
            self.send_error(404)
            return None
        size = os.path.getsize(path)
        m = re.match(r"bytes=(\d+)-(\d*)$", self.headers.get("Range", ""))
        start, end = (int(m.group(1)), int(m.group(2) or size - 1)) if m else (0, size - 1)
        end = min(end, size - 1)
        self.send_response(206 if m else 200)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        if m:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end, size))
        self.end_headers()
        return path, start, end
    def do_HEAD(self):
        self.head()
    def do_GET(self):
        r = self.head()
        if r:
            with open(r[0], "rb") as f:
                f.seek(r[1])
                self.wfile.write(f.read(r[2] - r[1] + 1))
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
with open(portfile + ".tmp", "w") as f:
    f.write(str(s.server_address[1]))
os.rename(portfile + ".tmp", portfile)
s.serve_forever()
PY
python3 "$T/rangeserver.py" "$T" "$T/port" 2>"$T/http.log" &
_pids+=("$!")
poll 10 test -s "$T/port" || die "HTTP server did not come up"
url="http://127.0.0.1:$(cat "$T/port")/disk.img"
curl -sf -r 1024-2047 "$url" | cmp - <(dd if="$T/disk.img" bs=1024 skip=1 count=1 status=none) ||
	die "HTTP range request broken"

sock=$T/curl.sock
nbdkit -f -r -U "$sock" -P "$T/curl.pid" curl "url=$url" 2>"$T/curl.nbdkit.log" &
_pids+=("$!")
poll 10 test -s "$T/curl.pid" || die "nbdkit curl did not come up"

# hydrating at 8 MiB/s: about 6 s, while ext4 is used
mount_clone "nbd+unix:///?socket=$sock" "$T/dest" "$T/meta" "$T/m" hydration_rate=8M,hydration_batch_size=16
new_loop "$T/m/image"
mount_fs "$LOOP" "$T/fs"
(cd "$T/fs" && md5sum -c --quiet "$T/sums") || die "files read back wrong over HTTP"
h=$(hydrated_count "$T/m")
head -c $((2 << 20)) /dev/urandom > "$T/new"
cp "$T/new" "$T/fs/new"
sync -f "$T/fs"
cmp "$T/new" "$T/fs/new" || die "new file differs"
log "ext4 used at $h regions hydrated; then $(hydrated_count "$T/m") after writing"
[ "$h" -lt "$(status_field "$T/m" 4 | cut -d/ -f2)" ] || die "hydration was over before ext4 was used"
poll 60 hydrated_all "$T/m" || die "hydration did not finish"
umount_fs "$T/fs"
free_loop "$LOOP"
unmount_clone "$T/m" "$T/meta"
e2fsck -fn "$T/dest" > "$T/fsck.log" 2>&1 || die "dest is not a clean ext4: $(tail -3 "$T/fsck.log")"
new_loop "$T/dest" -r
mount_fs "$LOOP" "$T/fs" ro
(cd "$T/fs" && md5sum -c --quiet "$T/sums") || die "files differ in dest"
cmp "$T/new" "$T/fs/new" || die "new file differs in dest"
pass
