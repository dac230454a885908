#!/bin/bash
# t-crash.sh with SOURCE over NBD (nbdkit, unix socket; issue 24): SIGKILL
# during writes, fsyncs and hydration from the server, fewer rounds.
# timeout: 300
exec env CRASH_NBD=1 CRASH_ROUNDS="${CRASH_ROUNDS:-25}" bash "$(dirname "$0")/t-crash.sh"
