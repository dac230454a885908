#!/bin/bash
# Crash consistency (spec 2.5, 3.2, 4.3): SIGKILL the daemon at random
# moments during writes, fsyncs and hydration; CRASH_ROUNDS times (200 in CI;
# set CRASH_ROUNDS=2000 for a long run). See crash.py for what is checked.
. "$(dirname "$0")/lib.sh"

_mounts+=("$T/m")
python3 "$TOP/tests/integration/crash.py" "$TOP" "$T" "${CRASH_ROUNDS:-200}" "${CRASH_SEED:-$RANDOM}"
pass
