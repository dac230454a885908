#!/usr/bin/env python3
"""wlog_regions.py WLOG REGION_SIZE: the regions of DEST's writes, zeroings
and punches in the write log (include/clonefs/blockio.h), in the order they
completed, one line per region; a record covering several regions gives
one line each."""
import struct
import sys

HDR = struct.Struct('<IBBHIIQQQQ')  # magic type role 0 pid 0 seq time off len


def dest_regions(path, rs):
    b = open(path, 'rb').read()
    pos = 16
    while pos + HDR.size <= len(b):
        _, typ, role, _, _, _, _, _, off, ln = HDR.unpack_from(b, pos)
        pos += HDR.size
        if typ in (1, 5):  # a write's data, a mark's text
            pos += ln
        if typ in (1, 3, 4) and role == 1 and ln:
            yield from range(off // rs, (off + ln - 1) // rs + 1)


if __name__ == '__main__':
    for r in dest_regions(sys.argv[1], int(sys.argv[2])):
        print(r)
