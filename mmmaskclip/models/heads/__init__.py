# Copyright (c) mmmaskclip contributors. All rights reserved.
from .maskclip_head import DEFAULT_TRAIN_CFG, MaskCLIPHead

__all__ = ['DEFAULT_TRAIN_CFG', 'MaskCLIPHead']
