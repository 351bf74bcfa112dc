# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Checkpoint files that cannot be used, reported in one sentence: empty,
truncated or garbage files, objects ``weights_only`` refuses, and
checkpoints of another model (their keys do not match).
"""
import os.path as osp
import re
import zipfile
from typing import Any, Callable, List, Optional, Tuple

from .input_checks import InvalidInputError, check_file, few, one_line

#: torch's zip checkpoints start with a local file header.
_ZIP_MAGIC = b'PK\x03\x04'
#: A key prefix that model wrappers (DDP, TTA) add and mmengine strips.
_WRAPPER_PREFIX = re.compile(r'^module\.')
#: Relative Mask Attention keys, ``visual_encoder.mask_attention.<block>.``.
_RMA_KEY = re.compile(r'^visual_encoder\.mask_attention\.(\d+)\.')
#: What other checkpoints' keys are, by prefix: the parts of MaskCLIP that
#: its checkpoints leave out (``FROZEN_PREFIXES`` of
#: ``mmmaskclip.models.detectors.maskclip``) and the models whose weights are
#: given elsewhere in a config.
KEY_SOURCES = (
    (('proposer.', 'text_encoder.', 'visual_encoder.clip_visual.'),
     "MaskCLIP's frozen parts (CLIP, the proposer), which load from the weights the config "
     'names'),
    (('visual.', 'transformer.', 'token_embedding.', 'positional_embedding', 'text_projection',
      'logit_scale', 'ln_final.'), 'CLIP (CLIP weights: give them as model.clip.pretrained)'),
    (('backbone.', 'neck.', 'panoptic_head.', 'panoptic_fusion_head.', 'rpn_head.', 'roi_head.'),
     'an mmdet detector (proposer weights: give them as model.proposer.checkpoint)'),
)


def checkpoint_error(path: Any,
                     err: BaseException,
                     what: str = 'checkpoint') -> Optional[InvalidInputError]:
    """The one-sentence error for a local checkpoint file that failed to
    load with ``err``, or None where ``path`` is not a local file (URLs and
    missing files have their own messages).

    Args:
        path: what the loader was given.
        err (BaseException): what loading raised.
        what (str): what the file is, e.g. ``'CLIP weights'``.

    Returns:
        InvalidInputError | None: the error naming the file and the fix.
    """
    if not isinstance(path, str) or not osp.isfile(path) or isinstance(err, MemoryError):
        return None
    text = one_line(err)
    with open(path, 'rb') as f:
        head = f.read(4)
    if not head:
        why = 'is empty (0 bytes): copy or download it again'
    elif head == _ZIP_MAGIC and not zipfile.is_zipfile(path):
        why = 'is truncated or corrupt (an incomplete zip archive): copy or download it again'
    elif 'Unsupported global' in text:
        found = re.search(r'Unsupported global: GLOBAL ([\w.]+)', text)
        name = found.group(1) if found else 'a Python object'
        why = (f'holds {name}, which torch does not load with weights_only=True: save the '
               'weights alone (torch.save(model.state_dict(), path)), and load only '
               'checkpoints you trust')
    elif 'Error(s) in loading state_dict' in text:
        why = (f'does not fit the model ({text[:160]}...): give the weights of this '
               'architecture')
    else:
        found = re.search(r'WeightsUnpickler error: (.*?)(?: Check the documentation|$)', text)
        text = found.group(1) if found else text  # not torch's advice on weights_only
        why = (f'cannot be loaded ({type(err).__name__}: {text[:100] or "no message"}): it is '
               'not a PyTorch checkpoint, or an incomplete copy; give a file saved by '
               'torch.save')
    return InvalidInputError(f'{what} {path} {why}.')


def call_loader(loader: Callable, filename: Any, *args, **kwargs) -> Any:
    """``loader(filename, ...)``, a local file that fails to load raising
    the :func:`checkpoint_error` that names it."""
    try:
        return loader(filename, *args, **kwargs)
    except InvalidInputError:
        raise
    except Exception as err:  # noqa: B902  (re-raised unless a local file)
        error = checkpoint_error(filename, err)
        if error is None:
            raise
        raise error from err


def checkpoint_keys(checkpoint: Any) -> set:
    """Parameter and buffer names of a loaded checkpoint (its
    ``state_dict`` if it has one), without a wrapper's ``module.``."""
    state = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else {}
    return {_WRAPPER_PREFIX.sub('', key) for key in state}


def key_mismatch(model, checkpoint: Any) -> Tuple[List[str], List[str]]:
    """Keys the checkpoint lacks and keys the model lacks.

    The model's keys are those of its ``state_dict()`` (a wrapper's
    ``module.`` stripped): for MaskCLIP the trainable parts only (CLIP and the
    proposer load from their own weights), so a MaskCLIP checkpoint matches
    its config exactly.

    Returns:
        tuple[list[str], list[str]]: ``(missing, unexpected)``, sorted.
    """
    expected = {_WRAPPER_PREFIX.sub('', key) for key in model.state_dict()}
    given = checkpoint_keys(checkpoint)
    return sorted(expected - given), sorted(given - expected)


def key_groups(keys: List[str], model_keys: bool) -> List[Tuple[str, List[str]]]:
    """``keys`` grouped by the model variant or part they belong to.

    Args:
        keys (list[str]): mismatching keys.
        model_keys (bool): they are the model's (missing from the
            checkpoint): keys of no known part are "other MaskCLIP parts";
            else "no MaskCLIP part (not a MaskCLIP checkpoint)".

    Returns:
        list[tuple[str, list[str]]]: ``(what, keys)``, e.g.
        ``("Relative Mask Attention in block(s) 1, 2 (an RMA config's
        checkpoint)", [...])`` (with ``model_keys``: "... (this RMA
        config's layers)"), in order of first key.
    """
    groups = {}
    rma_blocks = sorted({int(m.group(1)) for m in map(_RMA_KEY.match, keys) if m})
    for key in keys:
        if _RMA_KEY.match(key):
            what = (
                f'Relative Mask Attention in block(s) {", ".join(map(str, rma_blocks))} ' +
                ("(this RMA config's layers)" if model_keys else "(an RMA config's checkpoint)"))
        else:
            what = next((w for prefixes, w in KEY_SOURCES if key.startswith(prefixes)),
                        'other MaskCLIP parts'
                        if model_keys else 'no MaskCLIP part (not a MaskCLIP checkpoint)')
        groups.setdefault(what, []).append(key)
    return list(groups.items())


def check_checkpoint_fits(model, checkpoint: Any, path: str) -> None:
    """Refuse a checkpoint of another model or variant, e.g. a MaskCLIP
    checkpoint with Relative Mask Attention for a config without (which
    would ignore its weights), the reverse (which would leave RMA layers
    random), or a ResNet's, instead of loading what matches and warning in
    the log.

    Raises:
        InvalidInputError: naming the file, the mismatching keys of each
            kind grouped by what they belong to (see :func:`key_groups`;
            three of each group), and the fix.
    """
    missing, unexpected = key_mismatch(model, checkpoint)
    if not missing and not unexpected:
        return

    def listed(keys: List[str], model_keys: bool) -> str:
        return '; '.join(f'{len(group)} of {what}: {few(group, 3)}'
                         for what, group in key_groups(keys, model_keys))

    parts = []
    if missing:
        parts.append(f'lacks {len(missing)} key(s) of the model ({listed(missing, True)})')
    if unexpected:
        parts.append(f'has {len(unexpected)} key(s) the model does not have '
                     f'({listed(unexpected, False)})')
    if any(not _RMA_KEY.match(key) for key in unexpected):
        fix = ('give a MaskCLIP checkpoint saved by tools/train.py with this config (none for '
               'a training-free config: MaskCLIP w/o RMA has no weights of its own)')
    else:
        fix = ('give the config it was trained with (an RMA checkpoint needs a config with the '
               'same RMA layers and style) or a checkpoint of this config')
    raise InvalidInputError(
        f'checkpoint {path} does not fit this config: it {" and ".join(parts)}; {fix}.')


def load_checkpoint_file(path: str, model=None) -> Any:
    """Load a checkpoint through mmengine's loaders (with mmmaskclip's
    ``weights_only`` allow-list) and, with ``model``, check that it fits.

    Raises:
        MissingInputError: the file does not exist.
        InvalidInputError: the file is unusable (see
            :func:`checkpoint_error`) or does not fit ``model`` (see
            :func:`check_checkpoint_fits`).
    """
    from mmengine.runner.checkpoint import _load_checkpoint
    if '://' not in path:
        check_file(path, 'checkpoint')
    checkpoint = call_loader(_load_checkpoint, path, map_location='cpu')
    if model is not None:
        check_checkpoint_fits(model, checkpoint, path)
    return checkpoint
