# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Build a model from a config and load a checkpoint into it, reporting a
bad config or checkpoint in one sentence before any image is read: the
entries (``init_mask_classifier``, ``MaskCLIPInferencer``, ``tools/``)
share these."""
from typing import Optional

import torch.nn as nn
from mmdet.registry import MODELS
from mmengine.config import Config

from ..models.geometry import encoder_size
from ..utils import InvalidInputError, load_checkpoint_file
from ..utils.input_checks import registry_error


def check_model_settings(model: nn.Module) -> None:
    """Refuse the settings of a built model that would fail only at its
    first image: an ``encoder_input_size`` that is not a multiple of CLIP's
    patch (e.g. ``(330, 330)`` for ViT-L/14).

    Args:
        model (nn.Module): the model, or a wrapper of it (``.module``).

    Raises:
        InvalidInputError: naming the setting and a value that works.
    """
    model = getattr(model, 'module', model)
    size = getattr(model, 'encoder_input_size', None)
    patch = getattr(getattr(model, 'visual_encoder', None), 'patch_size', None)
    if size is None or patch is None:
        return
    try:
        encoder_size((1, 1), patch, size)
    except ValueError as err:
        fix = tuple(max(p, round(s / p) * p) for s, p in zip(size, patch))
        raise InvalidInputError(f'model.encoder_input_size {tuple(size)} is not a multiple of '
                                f"CLIP's patch size {tuple(patch)}: use e.g. {fix}.") from err


def build_model(cfg: Config) -> nn.Module:
    """``MODELS.build(cfg.model)``, an unknown registry type reported in one
    sentence naming its config key, then :func:`check_model_settings`.

    Raises:
        InvalidInputError: an unknown type, or settings that cannot work.
    """
    try:
        model = MODELS.build(cfg.model)
    except KeyError as err:
        error = registry_error(err, cfg)
        if error is None:
            raise
        raise error from err
    check_model_settings(model)
    return model


def load_weights(model: nn.Module, path: Optional[str]) -> Optional[dict]:
    """Load a checkpoint file into ``model`` after checking that it fits
    (see :func:`~mmmaskclip.utils.check_checkpoint_fits`); None loads
    nothing.

    Returns:
        dict | None: the loaded checkpoint.

    Raises:
        InvalidInputError: the file is unusable or of another model.
    """
    if path is None:
        return None
    from mmengine.runner.checkpoint import _load_checkpoint_to_model
    checkpoint = load_checkpoint_file(path, model)
    _load_checkpoint_to_model(model, checkpoint)
    return checkpoint
