"""Task ids that tell nothing of one another.

A record in a shared store is read by its id alone, so an id must not lead to
its neighbours: consecutive ids would let a client that knows its own task's
id read the results of the tasks started just before and after it, other
users' on an agent that serves many. Each id is drawn from the operating
system's random source; they stay below 2**53, so that JavaScript clients read
them exactly as numbers.
"""

from __future__ import annotations

import os
import struct

#: Ids drawn from one read of the random source (a system call): ids are taken
#: from a pool of them (``random_ids``), not drawn one by one.
BATCH = 512
#: Ids are 53-bit: exact as IEEE doubles, the numbers of JSON's JavaScript readers.
ID_BITS = 53

_UNPACK = struct.Struct(f">{BATCH}Q").unpack
_SHIFT = 64 - ID_BITS


def random_ids() -> list[int]:
    """``BATCH`` random ids, each in [1, 2**53). Zero is left out: some callers read it
    as "no id"."""
    return [word >> _SHIFT for word in _UNPACK(os.urandom(8 * BATCH)) if word >> _SHIFT]
