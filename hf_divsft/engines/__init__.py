"""Where the per-row maps run: `local` (`datasets.map` in this process, the default) or `ray` (Ray Data
`map_batches` on a local instance or a cluster).

Every feature column is computed by `columns.add_columns`, which hands the map to the engine in use, so a
strategy's batch functions are written once and run on either engine. Only the per-row maps move: the fits
(band counts, the macro sample fit, tag normalisation) and the selector stay in the driver's process.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar

ENGINES = ("local", "ray")

_engine: ContextVar = ContextVar("hf_divsft_engine", default=None)


def current_engine():
    """The engine `add_columns` maps with: the one `using` set, else the local one."""
    engine = _engine.get()
    return engine if engine is not None else _local()


def _local():
    from .local import LocalEngine  # imported late: local.py imports columns, which imports this module

    return LocalEngine()


@contextlib.contextmanager
def using(name: str = "local", address: str | None = None,
          while_starting: Callable[[], None] = lambda: None) -> Iterator:
    """Run the maps of the enclosed steps on engine `name`; yields the engine (its `describe()` goes into the
    manifest) once `while_starting` has run, while the engine started. A Ray instance this starts is shut
    down on exit; one already running, or a cluster at `address`, is left as it was."""
    if name == "local":
        while_starting()
        engines = contextlib.nullcontext(_local())
    else:
        from .ray import RayEngine

        engines = RayEngine.connected(address, while_starting)
    with engines as engine:
        token = _engine.set(engine)
        try:
            yield engine
        finally:
            _engine.reset(token)
