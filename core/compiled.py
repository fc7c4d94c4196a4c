"""Functions compiled by numba on first use: importing numba takes about a second, which the
commands that never call them should not pay. The machine code is cached beside the function's
module (numba's ``cache=True``), so later processes read it instead of compiling."""

from __future__ import annotations

import functools
from typing import Callable


@functools.cache
def compiled(fn: Callable) -> Callable:
    """``fn`` compiled in nopython mode, without the GIL held (one compilation per process)."""
    import numba

    return numba.njit(cache=True, nogil=True)(fn)
