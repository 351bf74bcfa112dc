# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Masks given to :func:`~mmmaskclip.apis.classify_masks`: files and arrays
read by one rule (``mask_type``) into the logits the model gets."""
import warnings
from typing import List, Union

import numpy as np
import torch

from ..models.utils import as_mask_logits
from ..utils import InputWarning, InvalidInputError, check_file, read_image
from ..utils.input_checks import few

__all__ = ['MASK_TYPES', 'load_mask_logits', 'load_masks', 'mask_logits_tensor', 'warn_empty_masks']

#: How mask values are read: see :func:`load_mask_logits`.
MASK_TYPES = ('auto', 'binary', 'prob', 'logit')
#: Probabilities are clamped to ``[PROB_EPS, 1 - PROB_EPS]`` for their logit (|logit| <= 9.2).
PROB_EPS = 1e-4
#: A colour masks file with more distinct colours than this looks like a picture.
MAX_COLOUR_LABELS = 128


def _label_map_masks(label: np.ndarray, path: str) -> np.ndarray:
    """Bool ``(M, H, W)``: one mask per non-zero value of a label map; a
    colour map's colours are ids ``R + 256 G + 256² B`` (COCO panoptic)."""
    if label.ndim == 3:
        rgb = label[..., :3]
        if (rgb == rgb[..., :1]).all():  # a gray label map saved as RGB
            label = rgb[..., 0]
        else:
            rgb = rgb.astype(np.int64)
            label = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
            count = len(np.unique(label))
            if count > MAX_COLOUR_LABELS:
                raise InvalidInputError(
                    f'masks file {path} has 3 channels and {count} distinct colours, so it looks '
                    'like an image, not a label map (single-channel, one value per mask; a '
                    f'COCO-panoptic PNG, up to {MAX_COLOUR_LABELS} colours, one per segment): '
                    'give a single-channel label map or an (M, H, W) .npy array of the masks.')
    ids = [i for i in np.unique(label) if i != 0]
    return np.stack([label == i for i in ids]) if ids else np.zeros((0, *label.shape), bool)


def _read_mask_file(path: str, mask_type: str) -> np.ndarray:
    """The array of a masks file: ``.npy``/``.npz`` (its first array), else
    bool masks of a label-map image (see :func:`_label_map_masks`)."""
    check_file(path, 'masks file')
    if not path.endswith(('.npy', '.npz')):
        if mask_type not in ('auto', 'binary'):
            raise InvalidInputError(f'masks file {path} is a label map, whose masks are binary, '
                                    f"but mask_type={mask_type!r}: use mask_type='auto', or save "
                                    'probabilities or logits with np.save.')
        label = read_image(path, flag='unchanged', channel_order='rgb', what='masks file')
        return _label_map_masks(label, path)
    try:
        data = np.load(path)
        arr = data[data.files[0]] if isinstance(data, np.lib.npyio.NpzFile) else data
    except Exception as err:  # noqa: B902  (garbage, pickled objects, no array)
        raise InvalidInputError(f'masks file {path} holds no readable array ({type(err).__name__}: '
                                f'{str(err)[:80]}): save the masks with np.save or '
                                'np.savez.') from err
    return arr


def _only_zero_one(arr: np.ndarray) -> bool:
    """Whether every value is 0 or 1 (one mask at a time: no full-size temporaries)."""
    return arr.dtype == bool or all(((m == 0) | (m == 1)).all() for m in arr)


def _resolve_mask_type(arr: np.ndarray, mask_type: str, what: str) -> str:
    """``mask_type`` with ``'auto'`` resolved; values that contradict it
    warn (``'prob'`` out of [0, 1] is an error)."""
    discrete = arr.dtype == bool or arr.dtype.kind in 'iu'
    low, high = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    unit = 0 <= low and high <= 1
    binary = discrete or (unit and _only_zero_one(arr))
    how = f'mask_type={mask_type!r}'
    if mask_type == 'auto':
        mask_type = 'binary' if binary else 'prob' if unit else 'logit'
        how = 'floats beyond [0, 1]'
    elif mask_type == 'prob' and not unit:
        raise InvalidInputError(f"{what} given as probabilities (mask_type='prob') hold values "
                                f'from {low:g} to {high:g}, outside [0, 1]: for logits (>= 0 '
                                "inside) use mask_type='logit' or 'auto'.")
    elif mask_type == 'binary' and not binary:
        warnings.warn(
            f"{what} given as binary masks (mask_type='binary', non-zero inside) hold values "
            f'from {low:g} to {high:g}, not only 0 and 1, so every non-zero pixel is inside: '
            "for probabilities or logits use mask_type='prob', 'logit' or 'auto'.", InputWarning)
    if mask_type == 'logit' and low >= 0 and arr.size:
        warnings.warn(
            f'{what} read as logits ({how}, >= 0 inside) hold no negative value, so every pixel '
            "is inside: for 0/1 or 0/255 masks use mask_type='binary', for probabilities "
            "'prob'.", InputWarning)
    return mask_type


def mask_logits_tensor(masks: Union[str, np.ndarray, torch.Tensor], mask_type: str) -> torch.Tensor:
    """Masks from a file or array -> float32 logits ``(M, H, W)`` (see
    :func:`load_mask_logits`)."""
    if mask_type not in MASK_TYPES:
        raise InvalidInputError(f'mask_type must be one of {", ".join(MASK_TYPES)}, got '
                                f'{mask_type!r}.')
    arr = _read_mask_file(masks, mask_type) if isinstance(masks, str) else masks
    if isinstance(arr, torch.Tensor):  # numpy has no bfloat16
        arr = arr.detach().cpu()
        arr = (arr.float() if arr.dtype == torch.bfloat16 else arr).numpy()
    arr = np.asarray(arr)
    what = f'masks file {masks}' if isinstance(masks, str) else 'masks'
    if (arr.ndim == 3 and arr.shape[2] in (3, 4) and min(arr.shape[:2]) >= 16
            and arr.dtype.kind in 'iuf' and not _only_zero_one(arr)):
        raise InvalidInputError(f'{what} of shape {arr.shape} look like an (H, W, {arr.shape[2]}) '
                                'image, not (M, H, W) masks: stack one mask per entry of the '
                                'first axis (a label map: np.stack([label == i for i in ids])).')
    if arr.ndim != 3 or not all(arr.shape[1:]):
        raise InvalidInputError(f'{what} must be (M, H, W) with H, W >= 1, got shape {arr.shape}'
                                ': stack the masks along a first axis (one mask: masks[None]).')
    if arr.dtype != bool and arr.dtype.kind not in 'iuf':
        raise InvalidInputError(f'{what} must be booleans, integers, probabilities or logits, '
                                f'got dtype {arr.dtype}.')
    if arr.dtype.kind == 'f' and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise InvalidInputError(f'{what} hold {bad} NaN or infinite value(s): give finite '
                                'logits (>= 0 is inside), probabilities or booleans.')
    kind = _resolve_mask_type(arr, mask_type, what)
    if kind == 'binary':
        return as_mask_logits(torch.from_numpy(np.ascontiguousarray(arr != 0)))
    values = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    return torch.logit(values, eps=PROB_EPS) if kind == 'prob' else values


def load_mask_logits(masks: Union[str, np.ndarray, torch.Tensor],
                     mask_type: str = 'auto') -> np.ndarray:
    """Masks from a file or array -> the float32 logits ``(M, H, W)`` that
    the model gets (``>= 0`` is inside).

    ``mask_type`` says how the values are read:

    - ``'binary'``: booleans or integers, non-zero is inside (0/1, 0/255);
      they become logits +1 inside and -1 outside.
    - ``'prob'``: probabilities in [0, 1], inside where ``p >= 0.5``; they
      become ``log(p / (1 - p))`` with ``p`` clamped to [1e-4, 1 - 1e-4], so
      soft masks keep their weights (RMA layers read them as probabilities).
    - ``'logit'``: logits, inside where ``>= 0``; passed as they are.
    - ``'auto'`` (default): booleans and integers are binary, floats holding
      only 0 and 1 too; other floats with every value in [0, 1] are
      probabilities; any other floats are logits.

    Values that contradict the type give one ``InputWarning``: logits
    (explicit, or floats beyond [0, 1] such as 0/255) with no negative value,
    where every pixel would be inside; ``'binary'`` with values other than 0
    and 1. ``'prob'`` values outside [0, 1] are an error.

    Files: a ``.npy``/``.npz`` of ``(M, H, W)`` masks (read as above), or a
    label-map image (PNG, 8- or 16-bit) where every value except 0 is one
    binary mask (0 = unlabelled; ``mask_type`` must be ``'auto'`` or
    ``'binary'``). A colour PNG is read as COCO-panoptic ids
    ``R + 256 G + 256² B`` (one mask per colour except black; equal channels
    as a gray label map), but one with more than 128 distinct colours looks
    like an image and is refused, as is an ``(H, W, 3)`` or ``(H, W, 4)``
    array with ``H, W >= 16`` and values other than 0 and 1 (an image given
    as masks). Masks of any resolution are resized to the image by
    :func:`~mmmaskclip.apis.classify_masks`; zero masks give zero rows.

    Args:
        masks (str | np.ndarray | Tensor): a file, or ``(M, H, W)`` masks.
        mask_type (str): ``'auto'``, ``'binary'``, ``'prob'`` or ``'logit'``.

    Returns:
        np.ndarray: float32 logits ``(M, H, W)``.

    Raises:
        InvalidInputError: naming the bad input: a missing or unreadable
            file, a shape other than ``(M, H, W)`` with ``H, W >= 1`` (an
            ``(H, W, 3)`` image included), a colour PNG that looks like an
            image, a non-numeric dtype, NaN or infinite values, probabilities
            outside [0, 1], an unknown ``mask_type``.
    """
    return mask_logits_tensor(masks, mask_type).numpy()


def load_masks(masks: Union[str, np.ndarray, torch.Tensor], mask_type: str = 'auto') -> np.ndarray:
    """Masks from a file or array -> bool ``(M, H, W)``, inside as
    :func:`load_mask_logits` reads them (its logits ``>= 0``: non-zero
    binary values, probabilities ``>= 0.5``, logits ``>= 0``)."""
    return mask_logits_tensor(masks, mask_type).numpy() >= 0


def warn_empty_masks(mask_logits: torch.Tensor) -> List[int]:
    """Warn once (``InputWarning``) naming the masks with no pixel inside:
    their labels mean nothing, yet their scores are reported.

    Args:
        mask_logits (Tensor): ``(M, H, W)`` logits, ``>= 0`` inside.

    Returns:
        list[int]: the indices of the empty masks.
    """
    empty = (~(mask_logits >= 0).flatten(1).any(1)).nonzero().flatten().tolist()
    if empty:
        one = len(empty) == 1
        warnings.warn(
            f'mask{"" if one else "s"} {few(empty, 3, quote=False)} ({len(empty)} of '
            f'{len(mask_logits)}) {"is" if one else "are"} empty (no pixel inside): '
            f'{"its label means" if one else "their labels mean"} nothing, though '
            f'{"its score is" if one else "their scores are"} still reported.', InputWarning)
    return empty
