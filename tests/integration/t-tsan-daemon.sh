#!/bin/bash
# The daemon under ThreadSanitizer (issue 22, items 3 and 4: races at mode
# changes): build mount.clonefs with -fsanitize=thread and glib's locks on
# pthreads (tests/unit/tsan_glib.c; glib's own futexes are invisible to
# TSan), run the tests that change modes under I/O - commits failing into
# ro, rollback, errors reported to open files, hydration switched on and
# off, sync writes beside the periodic commit - against it, and fail on
# any report (tests/tsan.supp: library-only false positives).
# timeout: 400
. "$(dirname "$0")/lib.sh"

# the daemon's sources, as Makefile.am lists them; all of the core is
# linked here, so json-glib too (the dump in md_tools.c)
sources=$(make -s -C "$TOP" print-core-sources)
daemon=$(make -s -C "$TOP" print-daemon-sources)
[ -n "$sources" ] && [ -n "$daemon" ] || die "no core_sources/daemon_sources in Makefile.am"
TSAN_DAEMON=$T/mount.clonefs-tsan
(cd "$TOP" && gcc -std=gnu11 -g -O1 -fsanitize=thread -fno-omit-frame-pointer \
	-D_GNU_SOURCE -DPACKAGE_VERSION='"tsan"' -Iinclude -Isrc \
	$(pkg-config --cflags fuse3 glib-2.0 json-glib-1.0) $sources $daemon tests/unit/tsan_glib.c \
	-o "$TSAN_DAEMON" $(pkg-config --libs fuse3 glib-2.0 json-glib-1.0 libcrypto)) ||
	die "cannot build the TSan daemon"
"$TSAN_DAEMON" --version > /dev/null 2>&1 || die "the TSan daemon does not run here"

failed=0
for t in t-lost-writes.sh t-sync-replay.sh t-concurrent.sh t-hydrate-control.sh; do
	start=$SECONDS
	if MOUNT_CLONEFS=$TSAN_DAEMON MOUNT_CLONEFS_SET=1 \
		TSAN_OPTIONS="log_path=$T/report:suppressions=$TOP/tests/tsan.supp" \
		timeout -k 10 300 bash "$TOP/tests/integration/$t" > "$T/$t.log" 2>&1; then
		log "ok   $t under the TSan daemon ($((SECONDS - start))s)"
	else
		log "FAIL $t under the TSan daemon; last lines:"
		tail -n 8 "$T/$t.log" | sed 's/^/#     /'
		failed=$((failed + 1))
	fi
done
if compgen -G "$T/report*" > /dev/null; then
	log "ThreadSanitizer reports: $(cat "$T"/report* | grep -c '^WARNING: ThreadSanitizer')"
	grep -h '^SUMMARY: ThreadSanitizer' "$T"/report* | sort | uniq -c
	head -n 60 "$(ls "$T"/report* | head -n 1)"
	die "ThreadSanitizer reports from the daemon"
fi
[ $failed -eq 0 ] || die "$failed tests failed under the TSan daemon"
pass
