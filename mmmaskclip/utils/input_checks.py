# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Bad input, reported in one sentence that names it and says what to do.

The error and warning types of mmmaskclip's entries (the Python APIs, the
demos, ``tools/``) and the checks they share: devices, files, images and the
registry errors of configs. The command lines run through :func:`run_cli`,
which prints a user error as ``prog: error: <sentence>`` and exits with 2.
"""
import contextlib
import os.path as osp
import re
import sys
import warnings
from typing import Any, Callable, List, Optional, Sequence, Type, Union

import numpy as np


class InvalidInputError(ValueError):
    """An input that cannot be used, named in one sentence with what to do."""


class MissingInputError(InvalidInputError, FileNotFoundError):
    """An input file or folder that does not exist."""


class InputWarning(UserWarning):
    """An input used after a change (duplicate names dropped, a long name
    truncated) or skipped (an unreadable image among several)."""


#: Exception types that the command lines report as one line (see
#: :func:`user_error`); their messages name the input and the fix.
_USER_ERRORS: List[Type[BaseException]] = [InvalidInputError]


def user_error(cls: Type[BaseException]) -> Type[BaseException]:
    """Class decorator: the command lines report ``cls`` as one line, no
    traceback (e.g. missing CLIP weights, an unsupported autocast dtype)."""
    _USER_ERRORS.append(cls)
    return cls


def one_line(text: Any) -> str:
    """``text`` on one line (whitespace runs collapsed)."""
    return ' '.join(str(text).split())


def few(items: Sequence[Any], limit: int = 5, quote: bool = True) -> str:
    """The first ``limit`` items, quoted (``quote``), and how many more there are."""
    shown = ', '.join(repr(i) if quote else str(i) for i in items[:limit])
    return shown + (f' and {len(items) - limit} more' if len(items) > limit else '')


# ------------------------------------------------------------------ files
def check_file(path: str, what: str = 'file') -> str:
    """``path`` if it is an existing file, else a one-sentence error.

    Raises:
        MissingInputError: ``path`` does not exist.
        InvalidInputError: ``path`` is a folder.
    """
    if osp.isdir(path):
        raise InvalidInputError(f'{what} {path} is a folder, not a file: give the file itself.')
    if not osp.isfile(path):
        raise MissingInputError(f'{what} {path} does not exist: check the path.')
    return path


def read_image(path: str,
               flag: str = 'color',
               channel_order: str = 'rgb',
               what: str = 'image') -> np.ndarray:
    """Decode an image file exactly as mmcv's ``LoadImageFromFile`` does
    (OpenCV; with ``flag='color'`` any grayscale, RGBA, 16-bit, palette or
    CMYK file becomes 8-bit 3-channel and the EXIF orientation is applied).

    Args:
        path (str): the image file.
        flag (str): mmcv's flag: ``'color'``, ``'grayscale'`` or
            ``'unchanged'`` (label maps: 16-bit values kept).
        channel_order (str): ``'rgb'`` or ``'bgr'``.
        what (str): what the file is, for the messages.

    Returns:
        np.ndarray: the decoded image.

    Raises:
        MissingInputError | InvalidInputError: naming the file: missing, a
            folder, empty, or not a decodable image (a text file, a
            truncated JPEG, ...).
    """
    import cv2
    import mmcv
    check_file(path, what)
    fix = 'replace it with a PNG or JPEG file' if what == 'image' else \
        'give a PNG label map or a .npy/.npz file'
    with open(path, 'rb') as f:
        data = f.read()
    if not data:
        raise InvalidInputError(f'{what} {path} is empty (0 bytes): {fix}.')
    try:
        image = mmcv.imfrombytes(data, flag=flag, channel_order=channel_order, backend='cv2')
    except cv2.error:
        image = None
    if image is None or image.size == 0:
        raise InvalidInputError(f'{what} {path} cannot be decoded (not an image, or a truncated '
                                f'or corrupt file): {fix}.')
    return image


def read_json(path: str, what: str = 'json file') -> Any:
    """The content of a JSON file, or a one-sentence error naming it
    (missing, a folder, not JSON: e.g. truncated)."""
    import json
    check_file(path, what)
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
        raise InvalidInputError(f'{what} {path} is not valid JSON ({one_line(err)[:80]}): '
                                'download or regenerate it.') from err


# ----------------------------------------------------------------- images
#: The channel orders of image arrays: ``'bgr'`` (OpenCV's ``cv2.imread``,
#: mmcv's and mmdet's convention, the default) or ``'rgb'`` (PIL, matplotlib).
CHANNEL_ORDERS = ('bgr', 'rgb')


def check_channel_order(channel_order: str) -> str:
    """``channel_order`` if it is ``'bgr'`` or ``'rgb'``, else one sentence.

    Raises:
        InvalidInputError: any other value.
    """
    if channel_order not in CHANNEL_ORDERS:
        raise InvalidInputError(f"channel_order must be 'bgr' or 'rgb', got {channel_order!r}: "
                                "arrays from cv2.imread are 'bgr', from PIL or matplotlib 'rgb'.")
    return channel_order


def warn_unusual_image_size(height: int,
                            width: int,
                            patch: Union[int, Sequence[int]],
                            encoder_input_size: Optional[Sequence[int]],
                            name: str = 'the image',
                            max_aspect: float = 10.0) -> Optional[str]:
    """Warn (one :class:`InputWarning`) about an image that CLIP sees badly.

    Two cases, in one sentence when both hold:

    - smaller than one CLIP patch (both sides, e.g. 1 x 1): CLIP sees less
      than a patch of detail, whatever the test pipeline's resize does; the
      remedy is a larger image.
    - an aspect ratio beyond ``max_aspect``:1 (e.g. 10 x 4000) while the
      model squashes its input to ``encoder_input_size`` (the authors'
      336 x 336); the remedy is the aspect-preserving input mode,
      ``cfg_options={'model.encoder_input_size': None}`` (command lines:
      ``--cfg-options model.encoder_input_size=None``). With
      ``encoder_input_size=None`` the aspect ratio is kept: no warning.

    Args:
        height (int): the image's height in pixels, as given (before the
            test pipeline).
        width (int): its width.
        patch (int | Sequence[int]): CLIP's patch size, ``p`` or ``(ph, pw)``.
        encoder_input_size (Sequence[int], optional): the model's
            ``encoder_input_size`` ``(He, We)``; None keeps the aspect ratio.
        name (str): the image in the sentence, e.g. ``'image a.png'``.
        max_aspect (float): the largest aspect distortion without warning.

    Returns:
        str | None: the warning's sentence, or None when there is none.
    """
    ph, pw = (patch, patch) if isinstance(patch, int) else (int(patch[0]), int(patch[1]))
    height, width = int(height), int(width)
    problems = []
    if height < ph and width < pw:
        problems.append(f'smaller than one CLIP patch ({pw} x {ph}), so CLIP sees less than one '
                        'patch of detail and its labels say little: give a larger image')
    if encoder_input_size is not None and min(height, width) > 0:
        enc_h, enc_w = int(encoder_input_size[0]), int(encoder_input_size[1])
        distortion = (width / height) / (enc_w / enc_h)
        distortion = max(distortion, 1 / distortion)
        if distortion > max_aspect:
            ratio = max(width, height) / min(width, height)
            problems.append(
                f'a {ratio:.0f}:1 aspect ratio that the model squashes to its {enc_w} x {enc_h} '
                'encoder input: keep the aspect ratio with the aspect-preserving input mode, '
                "cfg_options={'model.encoder_input_size': None} (--cfg-options "
                'model.encoder_input_size=None)')
    if not problems:
        return None
    message = f'{name} is {width} x {height} pixels, ' + '; and '.join(problems) + '.'
    warnings.warn(message, InputWarning, stacklevel=2)
    return message


# ---------------------------------------------------------------- devices
def check_device(device: Optional[str]) -> Optional[str]:
    """``device`` if torch can run on it now, else a one-sentence error.

    Args:
        device (str, optional): e.g. ``'cpu'``, ``'cuda'``, ``'cuda:1'``;
            None (pick one) passes.

    Raises:
        InvalidInputError: an unknown device name, or a device this machine
            lacks (``'cuda'`` without a GPU, ``'cuda:3'`` with two).
    """
    import torch
    if device is None:
        return None
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise InvalidInputError(f'device {device!r} is not a device torch knows: use cpu, cuda '
                                'or cuda:N.') from err
    if parsed.type == 'cuda':
        count = torch.cuda.device_count()
        if count == 0:
            raise InvalidInputError(f'device {device!r} needs a CUDA GPU, but torch finds none '
                                    "on this machine: use --device cpu (device='cpu').")
        if parsed.index is not None and parsed.index >= count:
            raise InvalidInputError(f'device {device!r} does not exist: torch finds {count} '
                                    f'CUDA GPU(s), cuda:0 to cuda:{count - 1}.')
    elif parsed.type not in ('cpu', 'meta'):
        backend = getattr(torch.backends, parsed.type, None) or getattr(torch, parsed.type, None)
        available = getattr(backend, 'is_available', None)
        if available is None or not available():
            raise InvalidInputError(f'device {device!r} is not available on this machine: use '
                                    "--device cpu (device='cpu').")
    return device


# --------------------------------------------------------------- registry
#: mmengine's message for a ``type`` that no registry holds.
_NOT_REGISTERED = re.compile(r'([\w.]+) is not in the ([\w:.-]+) registry')


def _key_of_type(cfg: Any, name: str, prefix: str = '') -> Optional[str]:
    """The dotted config key whose ``type`` is ``name`` (first found)."""
    if isinstance(cfg, dict):
        if cfg.get('type') == name:
            return f'{prefix}type'
        items = cfg.items()
    elif isinstance(cfg, (list, tuple)):
        items = ((str(i), v) for i, v in enumerate(cfg))
    else:
        return None
    for key, value in items:
        found = _key_of_type(value, name, f'{prefix}{key}.')
        if found:
            return found
    return None


def registry_error(err: BaseException, cfg: Any = None) -> Optional[InvalidInputError]:
    """The one-sentence form of mmengine's "X is not in the ... registry"
    error (the config key holding it when ``cfg`` is given), else None."""
    found = _NOT_REGISTERED.search(str(err)) if isinstance(err, KeyError) else None
    if found is None:
        return None
    name, registry = found.groups()
    if hasattr(cfg, 'to_dict'):  # an mmengine Config
        cfg = cfg.to_dict()
    key = _key_of_type(cfg, name)
    where = f'{key}={name!r}' if key else f'type {name!r}'
    return InvalidInputError(f'the config names {where}, which is not in the {registry} '
                             'registry: check the spelling, or import the module that '
                             'registers it (custom_imports).')


# ---------------------------------------------------------- command lines
def as_user_error(err: BaseException, cfg: Any = None) -> Optional[BaseException]:
    """``err`` as an error to report in one line, or None for a bug (to
    raise with its traceback).

    User errors are those of :func:`user_error` types, mmengine's registry
    errors (see :func:`registry_error`) and operating-system errors about a
    named file (missing, a folder, no permission).
    """
    if isinstance(err, tuple(_USER_ERRORS)):
        return err
    if isinstance(err, OSError) and getattr(err, 'filename', None):
        if isinstance(err, FileNotFoundError):
            return MissingInputError(f'{err.filename} does not exist: check the path.')
        return InvalidInputError(f'cannot use {err.filename}: {err.strerror}.')
    return registry_error(err, cfg)


@contextlib.contextmanager
def one_line_warnings(prog: str):
    """Within the block, print every :class:`InputWarning` as one line
    ``prog: warning: <sentence>`` on stderr (other warnings as usual)."""
    with warnings.catch_warnings():
        warnings.simplefilter('always', InputWarning)
        show = warnings.showwarning

        def showwarning(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, InputWarning):
                print(f'{prog}: warning: {one_line(message)}', file=sys.stderr)
            else:
                show(message, category, filename, lineno, file, line)

        warnings.showwarning = showwarning
        yield


def run_cli(prog: str, work: Callable[[], int], cfg: Any = None) -> int:
    """Run a command line's ``work``; a user error (see
    :func:`as_user_error`) becomes ``prog: error: <sentence>`` on stderr and
    exit status 2, input warnings one line each.

    Args:
        prog (str): the program name, e.g. ``'demo.py'``.
        work (Callable[[], int]): the work; returns the exit status.
        cfg (Config, optional): the config, to name the key of an unknown
            registry type.

    Returns:
        int: the exit status.
    """
    with one_line_warnings(prog):
        try:
            return work()
        except Exception as err:  # noqa: B902  (bugs are re-raised)
            user = as_user_error(err, cfg)
            if user is None:
                raise
            print(f'{prog}: error: {one_line(user)}', file=sys.stderr)
            return 2
