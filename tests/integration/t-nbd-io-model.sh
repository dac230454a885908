#!/bin/bash
# t-io-model.sh with SOURCE over NBD (nbdkit, unix socket; issue 24): the
# model-checked random reads and writes, remount and hydration under load.
# timeout: 300
exec env CLONEFS_TEST_NBD=1 bash "$(dirname "$0")/t-io-model.sh"
