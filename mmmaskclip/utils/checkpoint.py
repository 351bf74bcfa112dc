# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Scoped ``weights_only`` allow-list for mmengine Runner checkpoints.

torch >= 2.6 loads with ``weights_only=True``, which rejects the message hub
that mmengine's Runner checkpoints pickle. This module allow-lists exactly the
globals those checkpoints need, only while one of mmengine's checkpoint
loaders runs, and maps ``getattr`` to a restricted one. It also converts
the numpy and ``HistoryBuffer`` objects of a checkpoint to plain data and
back (:func:`to_plain_data`, :func:`from_plain_data`), so that the
checkpoints MaskCLIP saves (``PlainCheckpointHook``) load with no allow-list
at all. Why and how: ``docs/internals.md`` (the checkpoint allow-list).
"""
import contextlib
import copy
import functools
import logging
import threading
import types
from collections import OrderedDict
from typing import Any, Callable, Iterator, List, Optional, Tuple, Union

import torch

from .checkpoint_files import call_loader

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


def _drop_executable_config(checkpoint: Any) -> Any:
    """``checkpoint`` without ``meta['config']``, which ``Runner.resume`` runs.

    ``Runner.resume`` (mmengine 0.10.7) passes ``checkpoint['meta']['config']``
    to ``Config.fromstring(..., file_format='.py')``, which executes it as
    Python code, whatever ``weights_only`` refused while unpickling. mmengine
    writes the config as ``meta['cfg']``; ``'config'`` comes from mmcv 1.x
    runners, and ``resume`` only reads it to compare the number of GPUs. So
    it is dropped, with a warning.

    Args:
        checkpoint (Any): A loaded checkpoint.

    Returns:
        Any: ``checkpoint``, or a shallow copy with a new ``meta`` that lacks
        ``'config'``.
    """
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    if not isinstance(meta, dict) or 'config' not in meta:
        return checkpoint
    from mmengine.logging import print_log
    print_log(
        "Ignoring meta['config'] of the checkpoint: mmengine's resume would run it as Python "
        'code (mmengine itself saves the config as meta["cfg"]).',
        logger='current',
        level=logging.WARNING)
    checkpoint = copy.copy(checkpoint)
    checkpoint['meta'] = {key: value for key, value in meta.items() if key != 'config'}
    return checkpoint


def _wrap_loader(loader: Callable) -> Callable:
    """Make ``loader`` run inside :func:`runner_checkpoint_globals`.

    The wrapped loader also restores what :func:`to_plain_data` converted,
    so that plain checkpoints load as ordinary ones, drops code that
    ``Runner.resume`` would run (:func:`_drop_executable_config`), and
    reports an unusable local file in one sentence (``call_loader``).

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
        with runner_checkpoint_globals():  # an unusable file: one sentence naming it
            checkpoint = call_loader(loader, *args, **kwargs)
        return _drop_executable_config(from_plain_data(checkpoint))

    setattr(wrapper, _WRAPPED_ATTR, True)
    return wrapper


def install_checkpoint_allowlist() -> None:
    """Run every mmengine checkpoint loader inside the scoped allow-list.

    Wraps each loader registered in
    ``mmengine.runner.checkpoint.CheckpointLoader._schemes`` (local files,
    http(s), ``open-mmlab://``, ...) with :func:`runner_checkpoint_globals`
    (and :func:`from_plain_data`), and makes ``CheckpointLoader`` wrap
    loaders registered later as well. The wrappers keep the loaders' names
    (``CheckpointLoader`` logs them). Calling this again is a no-op.

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


#: Key marking a dict of plain data that stands for another object.
PLAIN_TAG = '__mmmaskclip_plain__'
# numpy dtype kinds whose values are plain Python objects: bool, int, uint,
# float, complex, str.
_PLAIN_KINDS = 'biufcU'
_PLAIN_LEAVES = (type(None), bool, int, float, complex, str, bytes, bytearray, torch.Size,
                 torch.dtype, torch.device)


def _rebuild(obj: Any, items: list) -> Any:
    """``obj``'s container type (dict, OrderedDict, list, tuple) over ``items``."""
    if isinstance(obj, dict):
        new = type(obj)(items)
        if hasattr(obj, '__dict__'):  # e.g. the ``_metadata`` of a state dict
            new.__dict__.update(obj.__dict__)
        return new
    return type(obj)(items)


def _map_containers(obj: Any, fn: Callable[[Any], Any]) -> Any:
    """Apply ``fn`` to the values of a container, rebuilt only if one changed.

    Args:
        obj (Any): A dict, OrderedDict, list or tuple (exact types; other
            objects are returned as they are).
        fn (Callable): Maps a value to its replacement.

    Returns:
        Any: ``obj`` itself if no value changed, else a new container.
    """
    if type(obj) in (dict, OrderedDict):
        items = [(key, fn(value)) for key, value in obj.items()]
        changed = any(new is not obj[key] for key, new in items)
    elif type(obj) in (list, tuple):
        items = [fn(value) for value in obj]
        changed = any(new is not old for new, old in zip(items, obj))
    else:
        return obj
    return _rebuild(obj, items) if changed else obj


def _array_to_plain(array: Any) -> Any:
    """A numpy array or scalar as a tagged dict of lists, or itself."""
    import numpy as np
    if array.dtype.kind not in _PLAIN_KINDS:
        return array
    kind = 'ndarray' if isinstance(array, np.ndarray) else 'numpy_scalar'
    return {
        PLAIN_TAG: kind,
        'dtype': array.dtype.str,
        'shape': list(array.shape),
        'data': array.tolist()
    }


def to_plain_data(obj: Any) -> Any:
    """Replace numpy arrays, numpy scalars and ``HistoryBuffer`` by plain data.

    Each becomes a dict tagged with :data:`PLAIN_TAG` that holds only lists,
    numbers and strings (dtype as ``numpy.dtype.str``, e.g. ``'<f8'``), which
    torch's ``weights_only`` loading accepts with no allow-list. Values are
    exact: ``tolist`` gives Python numbers of at least the array's precision.
    A ``HistoryBuffer`` keeps its logs, counts and ``max_length``; its
    statistics methods are class-level and registered by code, not data.
    Containers (dict, OrderedDict, list, tuple) are rebuilt only where
    something inside changed, so e.g. model state dicts stay the same objects.
    Arrays of other kinds (objects, bytes, dates) are left as they are.

    Args:
        obj (Any): A checkpoint or part of one.

    Returns:
        Any: ``obj`` with the conversions applied; the input is not modified.
    """
    import numpy as np
    from mmengine.logging import HistoryBuffer
    if isinstance(obj, (np.ndarray, np.generic)):
        return _array_to_plain(obj)
    if isinstance(obj, HistoryBuffer):
        return {
            PLAIN_TAG: 'HistoryBuffer',
            'log_history': _array_to_plain(np.asarray(obj._log_history)),
            'count_history': _array_to_plain(np.asarray(obj._count_history)),
            'max_length': int(obj.max_length)
        }
    return _map_containers(obj, to_plain_data)


def _plain_to_object(data: dict) -> Any:
    """The object a dict tagged by :func:`to_plain_data` stands for."""
    import numpy as np
    from mmengine.logging import HistoryBuffer
    kind = data[PLAIN_TAG]
    if kind == 'HistoryBuffer':
        return HistoryBuffer(
            from_plain_data(data['log_history']), from_plain_data(data['count_history']),
            data['max_length'])
    if kind in ('ndarray', 'numpy_scalar'):
        array = np.array(data['data'], dtype=np.dtype(data['dtype'])).reshape(data['shape'])
        return array if kind == 'ndarray' else array[()]
    raise ValueError(f'The checkpoint holds plain data of unknown kind {kind!r}: it was '
                     'written by a newer mmmaskclip, update mmmaskclip to load it.')


def from_plain_data(obj: Any) -> Any:
    """Restore what :func:`to_plain_data` converted; the inverse of it.

    Args:
        obj (Any): A loaded checkpoint or part of one.

    Returns:
        Any: ``obj`` with tagged dicts replaced by the objects they stand
        for; ``obj`` itself if it holds none. The input is not modified.

    Raises:
        ValueError: If a tagged dict is of a kind this version does not know.
    """
    if type(obj) is dict and PLAIN_TAG in obj:
        return _plain_to_object(obj)
    return _map_containers(obj, from_plain_data)


def non_plain_paths(obj: Any, path: str = 'checkpoint') -> List[str]:
    """Where ``obj`` holds objects that ``weights_only`` loading would refuse.

    Plain are tensors, ``None``, bools, numbers, strings, bytes,
    ``torch.Size``, ``torch.dtype``, ``torch.device``, and dicts, OrderedDicts, lists,
    tuples and sets of plain objects (exact types, as torch's unpickler
    allows them without an allow-list).

    Args:
        obj (Any): A checkpoint or part of one.
        path (str): The name of ``obj`` in the messages.

    Returns:
        list[str]: ``'<path> (<type>)'`` of each non-plain object, e.g.
        ``"checkpoint['meta']['seed'] (numpy.int64)"``.
    """
    if isinstance(obj, torch.Tensor) or type(obj) in _PLAIN_LEAVES:
        return []
    if type(obj) in (dict, OrderedDict):
        return [p for key, value in obj.items() for p in non_plain_paths(value, f'{path}[{key!r}]')]
    if type(obj) in (list, tuple, set):
        return [p for i, value in enumerate(obj) for p in non_plain_paths(value, f'{path}[{i}]')]
    return [f'{path} ({type(obj).__module__}.{type(obj).__qualname__})']
