"""Keep freed memory in the process: glibc's allocator settings for a job's many large tensors.

Every SAE step allocates a dozen [1024, d_sae] float tensors (4–16 MB each) and frees them again.
With glibc's defaults the freed heap is returned to the kernel (``M_TRIM_THRESHOLD``) and large
blocks are mmapped afresh, so new tensors are paid for in page faults. Measured on the 2-core AMX
machine (one thread per process, bf16 autocast, d_in 640; median step): two processes at once, as
the pipeline runs its jobs, gated (d_sae 2560) 0.110–0.117 s with the defaults against
0.100–0.102 s with the settings below, baseline (3840) 0.089–0.096 s against 0.083–0.084 s; one
process alone, 0.099 against 0.092 s (gated). On a loaded machine the page faults cost far more
(a niced process beside two busy ones: gated 0.51 against 0.16 s). The arithmetic is the same,
and so is every tensor's 64-byte alignment (torch's CPU allocator), so results are bit-identical
(tests/test_allocator.py; benchmarks/neutral_check.py on the whole DAG).

The cost: freed memory stays with the process up to its peak (the jobs hold a few GB at most).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

# mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3

#: Set to 1 to keep the C library's defaults (to measure them, or where another allocator is preloaded).
OPT_OUT_ENV = "SAEREPRO_DEFAULT_ALLOCATOR"

#: Blocks up to this size come from the heap; glibc refuses more than 32 MiB on 64-bit systems.
MMAP_THRESHOLD = 32 * 1024 * 1024
#: Freed memory at the top of the heap is never handed back to the kernel below this.
TRIM_THRESHOLD = 2**31 - 1
#: The heap grows by this much beyond each request, so growing it is rare.
TOP_PAD = 256 * 1024 * 1024

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Apply the settings above to this process (once); True where they took effect.

    A no-op returning False where the C library is not glibc (macOS, musl) or ``$SAEREPRO_DEFAULT_ALLOCATOR``
    is 1: the allocator keeps its defaults, and only speed differs.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get(OPT_OUT_ENV) == "1":
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    settings = ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD))
    _applied = all(mallopt(param, value) == 1 for param, value in settings)
    if not _applied:
        log.warning("mallopt refused saerepro's allocator settings; training and evaluation run slower")
    return _applied
