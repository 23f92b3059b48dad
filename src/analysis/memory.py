"""The process-wide memory and thread settings of a build (glibc malloc, pyarrow's memory
pool, numpy's huge-page advice, the BLAS thread pool) and the heap faulted in ahead.

None of them changes a value; each is measured where it is named. The build enters
:data:`heap_for_large_tables` (restored when the last build running in the process ends);
the ``kneeload build`` command calls :func:`prepare_build_process` first, before it imports
numpy and pandas, so that the heap the build will use is faulted in on the second core
while the interpreter imports (``bench/bench_build.py``). This module imports nothing
heavy at its top for that reason.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from analysis.filenames import is_parsed_file

#: During a build, glibc malloc serves blocks up to this size from its heap and keeps freed
#: memory up to this size for reuse (mallopt M_MMAP_THRESHOLD / M_TRIM_THRESHOLD). The
#: build's numpy temporaries are column-sized (6 MB at 2,000 x 365, 26 MB at 9,000 x 365);
#: by default each one is a fresh mmap, page-faulted in and unmapped again with a TLB
#: shootdown across the feature threads. Measured on the 9,000 x 365 build_panel (three
#: fresh processes each, 2-core VM): system time 1.9-2.1 s -> 0.5-1.2 s, wall 4.2-4.6 s ->
#: 2.9-3.9 s, peak +60 MiB. Afterwards the process's own values again: glibc's 128 KiB, or
#: what ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` or ``GLIBC_TUNABLES`` set
#: (:func:`_process_threshold`). glibc's dynamic mmap threshold (raised as large blocks are
#: freed) stays off once set: mallopt has no way to switch it back on (speed only).
HEAP_KEEP_BYTES = 1 << 30
#: malloc arenas while building (mallopt M_ARENA_MAX): one, shared by the feature and writer
#: threads. With an arena per thread, a block one thread freed could not serve another
#: thread's next column, and each arena kept its own free memory (the trim threshold
#: above): 2,000 x 365 build peak 1,043-1,055 MiB -> 940-958 MiB, CPU time no higher
#: (three fresh processes each, 2-core VM, bench/bench_build.py data). glibc fixes its arena
#: limit the first time a thread needs an arena of its own, so this one is not undone: a
#: process that has built keeps one arena (only the malloc speed of many threads at once
#: is affected, never a value).
BUILD_MALLOC_ARENAS = 1
#: pyarrow's memory pool while building: the system allocator (the malloc heap above), not
#: pyarrow's own mimalloc pool, so the CSV reader's and the writers' freed buffers serve the
#: numpy columns that follow instead of staying in a second allocator: 2,000 x 365 build
#: peak 940-961 MiB -> 905-916 MiB, CPU time no higher (three processes each, as above).
BUILD_ARROW_POOL = "system"
#: numpy's transparent-huge-page advice while building: off. numpy advises the kernel to back
#: every array of 4 MiB or more with 2 MiB pages (madvise MADV_HUGEPAGE); the build touches
#: its columns about once, and on a virtual machine that returns freed guest memory to the
#: host (virtio free-page reporting, as on this project's machines) each huge page is
#: faulted in from the host and zeroed whole: a fresh 1 GiB of arrays took 2.8 s with the
#: advice and 0.4-0.5 s without (five fresh processes each). 9,000 x 365 build
#: (bench/bench_build.py --big data, three fresh processes each, alternately): system time
#: 6.1-6.5 s -> 3.9-4.2 s, wall 14.2-15.1 s -> 13.3-13.9 s; no value changes (it only
#: chooses the page size). The previous setting is restored afterwards.
BUILD_NUMPY_HUGEPAGES = False
_GLIBC_DEFAULT_THRESHOLD = 128 * 1024
#: The environment's names of the two thresholds (glibc's legacy variables, GLIBC_TUNABLES).
_THRESHOLD_ENV = {"mmap": ("MALLOC_MMAP_THRESHOLD_", "glibc.malloc.mmap_threshold"),
                  "trim": ("MALLOC_TRIM_THRESHOLD_", "glibc.malloc.trim_threshold")}
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8  # glibc <malloc.h>

#: OpenBLAS worker threads of a ``kneeload build`` process (``OPENBLAS_NUM_THREADS``, set
#: before numpy loads OpenBLAS unless the environment says otherwise). The build does no
#: linear algebra; numpy's OpenBLAS starts a worker per core at import, which busy-waits on
#: the second core (``perf``: 3.8 % of the 2,000 x 365 build's CPU time in
#: ``blas_thread_server``; CPU time 3.09 -> 2.92 s, twelve fresh processes each, alternately).
BUILD_BLAS_THREADS = 1
#: Heap the ``kneeload build`` command faults in while it imports, per byte of input files
#: (:func:`prepare_build_process`): the 2,000 x 365 bench build reads 33 MB of CSV and peaks
#: at 806 MiB, 24 bytes per input byte; 20 stays below what the build touches.
WARM_BYTES_PER_INPUT_BYTE = 20
#: ... and at most this much: what the second core faults in (memset) during the ~0.3 s of
#: imports on this project's 2-core VMs (640 MiB: the join after the imports waited
#: 0-0.09 s). 2,000 x 365 build: wall 1.98 -> 1.86 s median, peak 807 -> 851 MiB (ten fresh
#: processes each, alternately).
WARM_MAX_BYTES = 640 << 20
#: No warm-up below this (a small input's heap is faulted in quickly anyway).
WARM_MIN_BYTES = 16 << 20


class _BuildSettings:
    """The process-wide memory settings of builds, entered by the first build running and
    restored when the last one ends: builds overlapping on threads of one process (a
    library caller's) would otherwise each restore what they found on entry, so the last
    to finish put back another build's settings, not the caller's."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = 0
        self._restore: ExitStack | None = None

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._running == 0:
                with ExitStack() as stack:
                    stack.enter_context(_numpy_hugepages(BUILD_NUMPY_HUGEPAGES))
                    libc = _glibc()
                    if libc is not None:
                        stack.enter_context(_malloc_for_large_tables(libc))
                    self._restore = stack.pop_all()
            self._running += 1
        try:
            yield
        except BaseException as error:
            self._leave(error)
            raise
        self._leave(None)

    def _leave(self, error: BaseException | None) -> None:
        """One build ended (with ``error``, or None); the last restores the settings, with
        ``error`` as the context of a failure to restore (the build's error is kept)."""
        with self._lock:
            self._running -= 1
            if self._running == 0 and self._restore is not None:
                restore, self._restore = self._restore, None
                if error is None:
                    restore.close()
                else:
                    restore.__exit__(type(error), error, error.__traceback__)


#: Keep column-sized blocks in the malloc heap while building (:data:`HEAP_KEEP_BYTES`), in
#: :data:`BUILD_MALLOC_ARENAS` arena(s) shared by the build's threads, with pyarrow
#: allocating from the same heap (:data:`BUILD_ARROW_POOL`) and numpy not asking for huge
#: pages (:data:`BUILD_NUMPY_HUGEPAGES`); when the last build running ends, glibc's default
#: thresholds, pyarrow's pool and numpy's setting again (the arena limit stays) and the free
#: heap returned. The malloc part is a no-op where the C library is not glibc.
heap_for_large_tables = _BuildSettings()


@contextmanager
def _malloc_for_large_tables(libc: Any) -> Iterator[None]:
    """glibc's thresholds and arena limit and pyarrow's pool while building (see
    :data:`heap_for_large_tables`)."""
    import pyarrow as pa

    pool = pa.default_memory_pool()
    pa.set_memory_pool(getattr(pa, f"{BUILD_ARROW_POOL}_memory_pool")())
    _set_heap_options(libc)
    try:
        yield
    finally:
        libc.mallopt(_M_MMAP_THRESHOLD, _process_threshold("mmap"))
        libc.mallopt(_M_TRIM_THRESHOLD, _process_threshold("trim"))
        pa.set_memory_pool(pool)
        libc.malloc_trim(0)


def _process_threshold(kind: str) -> int:
    """The process's own ``kind`` (``"mmap"`` or ``"trim"``) threshold in bytes: the value
    ``GLIBC_TUNABLES`` or glibc's legacy variable gives it (the tunable wins, as in glibc),
    else glibc's default."""
    legacy, tunable = _THRESHOLD_ENV[kind]
    tunables = dict(item.partition("=")[::2]
                    for item in os.environ.get("GLIBC_TUNABLES", "").split(":"))
    for value in (tunables.get(tunable, ""), os.environ.get(legacy, "")):
        if value.strip().isdigit():
            return int(value)
    return _GLIBC_DEFAULT_THRESHOLD


@contextmanager
def _numpy_hugepages(enabled: bool) -> Iterator[None]:
    """numpy's huge-page advice set to ``enabled`` inside, the previous setting after
    (:data:`BUILD_NUMPY_HUGEPAGES`); a no-op where numpy has no such switch."""
    import numpy as np

    # numpy's own switch (numpy 2: numpy._core.multiarray; NUMPY_MADVISE_HUGEPAGE=0 sets it
    # for a whole process, at import)
    switch = getattr(getattr(getattr(np, "_core", None), "multiarray", None),
                     "_set_madvise_hugepage", None)
    if switch is None:
        yield
        return
    before = switch(enabled)
    try:
        yield
    finally:
        switch(before)


def _glibc() -> Any:
    """The process's C library when it is glibc (``mallopt``, ``malloc_trim``), else None."""
    try:
        libc = ctypes.CDLL(None)  # the symbols already loaded into this process
    except OSError:
        return None
    if not all(hasattr(libc, f) for f in ("gnu_get_libc_version", "mallopt", "malloc_trim")):
        return None
    return libc


def prepare_build_process(raw_dir: str | Path) -> Callable[[], None]:
    """Before a build process imports numpy: :data:`BUILD_BLAS_THREADS`, and (glibc only)
    the build's malloc settings (:func:`_malloc_for_large_tables` sets the same again) with
    a heap of :func:`warm_bytes` faulted in on a second thread.

    Returns the function that waits for the warm-up (call it once the imports are done,
    before the build allocates: the warmed block is freed into the heap, where the build's
    columns then find pages that are already faulted in). A no-op when numpy is already
    imported (a library caller's process: its heap is its own). Called again in the same
    process (the console script calls it before the CLI loads, the build command after
    parsing its options: :mod:`analysis.__main__`), it returns the first call's wait and
    starts nothing.
    """
    global _prepared
    if _prepared is not None:
        return _prepared
    if "numpy" in sys.modules:
        return lambda: None
    _prepared = _start_warm_up(raw_dir)
    return _prepared


#: The wait of this process's first :func:`prepare_build_process` (None: not called yet).
_prepared: Callable[[], None] | None = None


def _start_warm_up(raw_dir: str | Path) -> Callable[[], None]:
    """:data:`BUILD_BLAS_THREADS`, then (glibc only, :data:`WARM_MIN_BYTES` or more to warm)
    the heap options and the warm-up thread; its join (a no-op when none started)."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(BUILD_BLAS_THREADS))
    libc = _glibc()
    if libc is None or _address_space_limited():
        return lambda: None
    size = warm_bytes(raw_dir)
    if size < WARM_MIN_BYTES:
        return lambda: None
    # before the thread starts: one arena (the thread's block comes from the main heap,
    # where the build allocates) and freed memory kept in the heap, not returned
    _set_heap_options(libc)
    thread = threading.Thread(target=_fault_in, args=(libc, size), daemon=True,
                              name="kneeload-warm-heap")
    thread.start()
    return thread.join


def warm_bytes(raw_dir: str | Path) -> int:
    """Bytes of heap to fault in ahead of a build of ``raw_dir``:
    :data:`WARM_BYTES_PER_INPUT_BYTE` x the size of the files its readers parse
    (:func:`analysis.filenames.is_parsed_file`; hidden files and folders, archives and
    anything else the build only fingerprints do not count; symbolic links not followed;
    the walk stops at :data:`WARM_MAX_BYTES`); 0 for a path that cannot be read as a
    folder."""
    limit = WARM_MAX_BYTES // WARM_BYTES_PER_INPUT_BYTE
    total = 0
    folders = [raw_dir]
    while folders and total < limit:
        try:
            entries = list(os.scandir(folders.pop()))
        except (OSError, ValueError):  # ValueError: a NUL in the path
            continue  # the build itself reports an unreadable folder
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    folders.append(entry.path)
                elif entry.is_file(follow_symlinks=False) and is_parsed_file(entry.name):
                    total += entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
    return min(total * WARM_BYTES_PER_INPUT_BYTE, WARM_MAX_BYTES)


def _address_space_limited() -> bool:
    """Whether the process runs under an address-space or data-segment limit (``ulimit -v``,
    ``ulimit -d``): there the heap the warm-up keeps could leave too little room for the
    build's thread stacks (found by review: ``ulimit -v 2000000`` made a build that passes
    without the warm-up fail to start a thread), so none is warmed."""
    import resource

    return any(resource.getrlimit(limit)[0] != resource.RLIM_INFINITY
               for limit in (resource.RLIMIT_AS, resource.RLIMIT_DATA))


def _fault_in(libc: Any, size: int) -> None:
    """Allocate ``size`` bytes from the malloc heap, write every page, free them (kept in
    the heap by :data:`HEAP_KEEP_BYTES`). ctypes calls release the GIL, so the imports go on
    meanwhile."""
    malloc, free, memset = libc.malloc, libc.free, libc.memset
    malloc.restype = ctypes.c_void_p
    malloc.argtypes = [ctypes.c_size_t]
    free.argtypes = [ctypes.c_void_p]
    memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    block = malloc(size)
    if block:
        memset(block, 0, size)
        free(block)


def _set_heap_options(libc: Any) -> None:
    """glibc's malloc thresholds at :data:`HEAP_KEEP_BYTES` and its arena limit at
    :data:`BUILD_MALLOC_ARENAS`."""
    libc.mallopt(_M_MMAP_THRESHOLD, HEAP_KEEP_BYTES)
    libc.mallopt(_M_TRIM_THRESHOLD, HEAP_KEEP_BYTES)
    libc.mallopt(_M_ARENA_MAX, BUILD_MALLOC_ARENAS)
