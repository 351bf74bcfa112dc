# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Scoped ``weights_only`` allow-list for mmengine Runner checkpoints.

torch >= 2.6 loads with ``weights_only=True``, which rejects the message hub
that mmengine's Runner checkpoints pickle. This module allow-lists exactly the
globals those checkpoints need, only while one of mmengine's checkpoint
loaders runs, and maps ``getattr`` to a restricted one. Why and how:
``docs/internals.md`` (the checkpoint allow-list).
"""
import contextlib
import functools
import threading
import types
from typing import Any, Callable, Iterator, List, Optional, Tuple, Union

import torch

SafeGlobal = Union[Callable, Tuple[Callable, str]]

# Attribute set on loaders wrapped by :func:`install_checkpoint_allowlist`.
_WRAPPED_ATTR = '_mmmaskclip_checkpoint_allowlist'

_globals_cache: Optional[List[SafeGlobal]] = None

# State of :func:`runner_checkpoint_globals`: torch keeps its allow-list in
# one process-wide set, so concurrent or nested uses share one activation.
_lock = threading.Lock()
_depth = 0
_active: Optional[Any] = None


def _restricted_getattr(obj: Any, name: str) -> Callable:
    """Stand-in for ``builtins.getattr`` while unpickling Runner checkpoints.

    Pickle protocol 2 (torch's default) stores a function whose qualified
    name contains a dot, such as ``HistoryBuffer.mean``, as
    ``getattr(HistoryBuffer, 'mean')``. ``HistoryBuffer`` pickles its
    ``_statistics_methods`` that way. Only such lookups are resolved.

    Args:
        obj (Any): The object whose attribute is requested.
        name (str): The attribute name.

    Returns:
        Callable: The public method ``name`` of ``HistoryBuffer``.

    Raises:
        pickle.UnpicklingError: For any other lookup.
    """
    from pickle import UnpicklingError

    from mmengine.logging.history_buffer import HistoryBuffer
    if (obj is HistoryBuffer and isinstance(name, str) and not name.startswith('_')
            and isinstance(vars(HistoryBuffer).get(name), types.FunctionType)):
        return getattr(HistoryBuffer, name)
    raise UnpicklingError(f'getattr({obj!r}, {name!r}) is not allowed while loading an '
                          'mmengine checkpoint: only methods of HistoryBuffer are.')


def get_runner_checkpoint_globals() -> List[SafeGlobal]:
    """Globals that mmengine Runner checkpoints need with ``weights_only``.

    Built on first use, so that importing this module stays cheap; later
    calls return the same list object.

    The list holds, as accepted by :func:`torch.serialization.safe_globals`
    (an object, or ``(object, 'module.qualname')`` where the name in the
    file differs from the object's own):

    - ``mmengine.logging.history_buffer.HistoryBuffer``: the message hub's
      ``log_scalars``.
    - ``numpy.core.multiarray._reconstruct`` and ``numpy.ndarray``: the
      log and count arrays of each ``HistoryBuffer``.
    - ``numpy.dtype``, ``numpy.dtypes.Float64DType`` and
      ``numpy.dtypes.Int64DType``: their dtypes (float64 logs, int64
      counts). The dtype classes are not globals of the file, but torch
      only restores the state (``BUILD``) of allow-listed types.
    - ``numpy.core.multiarray.scalar``: numpy scalars, e.g. the
      ``best_score`` that ``CheckpointHook(save_best=...)`` keeps in the
      runtime info, as returned by the metric (``np.float64``).
    - ``numpy.dtypes.Float32DType``, ``Int32DType`` and ``BoolDType``: not
      in default Runner checkpoints, but metrics may return such numpy
      scalars, which then end up in the runtime info (``best_score``).
    - ``builtins.getattr``, mapped to :func:`_restricted_getattr`: the
      statistics methods of ``HistoryBuffer``.

    ``_reconstruct`` and ``scalar`` are listed under both their numpy 1.x
    (``numpy.core``) and numpy 2.x (``numpy._core``) names, so that files
    written with either numpy major version load.

    Returns:
        list: The globals, as accepted by
        :func:`torch.serialization.safe_globals`.
    """
    global _globals_cache
    if _globals_cache is None:
        import numpy as np
        from mmengine.logging.history_buffer import HistoryBuffer

        # Taken from the reducers so that no deprecated ``numpy.core``
        # attribute is touched under numpy 2.
        reconstruct = np.ndarray.__reduce__(np.zeros(0))[0]
        scalar = np.float64(0).__reduce__()[0]
        _globals_cache = [HistoryBuffer, np.ndarray, np.dtype]
        for obj in (reconstruct, scalar):
            for package in ('numpy.core', 'numpy._core'):
                _globals_cache.append((obj, f'{package}.multiarray.{obj.__name__}'))
        # Instances of the dtype classes are rebuilt with ``BUILD``, which
        # torch only applies to allow-listed types.
        _globals_cache += [
            type(np.dtype(dtype))
            for dtype in (np.float64, np.int64, np.float32, np.int32, np.bool_)
        ]
        _globals_cache.append((_restricted_getattr, 'builtins.getattr'))
    return _globals_cache


def __getattr__(name: str) -> Any:
    """Build ``RUNNER_CHECKPOINT_GLOBALS`` lazily (PEP 562)."""
    if name == 'RUNNER_CHECKPOINT_GLOBALS':
        return get_runner_checkpoint_globals()
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


@contextlib.contextmanager
def runner_checkpoint_globals() -> Iterator[None]:
    """Allow-list ``RUNNER_CHECKPOINT_GLOBALS`` for ``weights_only`` loads.

    Equivalent to ``torch.serialization.safe_globals(RUNNER_CHECKPOINT_
    GLOBALS)``, with two differences, both due to torch keeping the
    allow-list in one process-wide set, which ``safe_globals`` empties of
    its entries on exit:

    - globals that were already allow-listed (e.g. by the user through
      :func:`torch.serialization.add_safe_globals`) are left in place;
    - nested and concurrent (threads) uses are counted, and the globals are
      withdrawn when the last one exits.

    While the context is active, other threads' :func:`torch.load` calls
    see the globals too.

    Example:
        >>> with runner_checkpoint_globals():
        ...     ckpt = torch.load('work_dirs/iter_2.pth', map_location='cpu')
    """
    global _depth, _active
    with _lock:
        if _depth == 0:
            present = set(torch.serialization.get_safe_globals())
            missing = [item for item in get_runner_checkpoint_globals() if item not in present]
            _active = torch.serialization.safe_globals(missing)
            _active.__enter__()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                active, _active = _active, None
                active.__exit__(None, None, None)


def _wrap_loader(loader: Callable) -> Callable:
    """Make ``loader`` run inside :func:`runner_checkpoint_globals`.

    Args:
        loader (Callable): A checkpoint loader of ``CheckpointLoader``.

    Returns:
        Callable: The wrapped loader, or ``loader`` itself if it is wrapped
        already.
    """
    if getattr(loader, _WRAPPED_ATTR, False):
        return loader

    @functools.wraps(loader)
    def wrapper(*args, **kwargs):
        with runner_checkpoint_globals():
            return loader(*args, **kwargs)

    setattr(wrapper, _WRAPPED_ATTR, True)
    return wrapper


def install_checkpoint_allowlist() -> None:
    """Run every mmengine checkpoint loader inside the scoped allow-list.

    Wraps each loader registered in
    ``mmengine.runner.checkpoint.CheckpointLoader._schemes`` (local files,
    http(s), ``open-mmlab://``, ...) with :func:`runner_checkpoint_globals`,
    and makes ``CheckpointLoader`` wrap loaders registered later as well.
    The wrappers keep the loaders' names (``CheckpointLoader`` logs them).
    Calling this again is a no-op.

    Loaders called directly rather than through ``CheckpointLoader`` (e.g.
    ``mmengine.runner.checkpoint.load_from_local``) are not affected.
    """
    from mmengine.runner.checkpoint import CheckpointLoader

    for prefix, loader in list(CheckpointLoader._schemes.items()):
        CheckpointLoader._schemes[prefix] = _wrap_loader(loader)

    register = vars(CheckpointLoader)['_register_scheme'].__func__
    if getattr(register, _WRAPPED_ATTR, False):
        return

    @functools.wraps(register)
    def _register_scheme(cls, prefixes, loader, force=False):
        return register(cls, prefixes, _wrap_loader(loader), force=force)

    setattr(_register_scheme, _WRAPPED_ATTR, True)
    CheckpointLoader._register_scheme = classmethod(_register_scheme)
