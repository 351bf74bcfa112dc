# Copyright (c) mmmaskclip contributors. All rights reserved.
"""mmmaskclip: MaskCLIP (Ding, Wang & Tu, ICML 2023) as an OpenMMLab plugin.

Importing the package registers its modules into mmdet's registries and
lets mmengine load Runner checkpoints under torch's ``weights_only=True``.
"""
from .utils import install_checkpoint_allowlist
from .version import __version__

install_checkpoint_allowlist()

from . import datasets, engine, evaluation, models  # noqa: E402,F401  (registers modules)

__all__ = ['__version__']
