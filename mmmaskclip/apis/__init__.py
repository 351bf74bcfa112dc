# Copyright (c) mmmaskclip contributors. All rights reserved.
from .mask_classification import (MaskClassification, classify_masks, init_mask_classifier,
                                  load_image, load_masks)
from .maskclip_inferencer import MaskCLIPInferencer
from .visualization import draw_mask_classification

__all__ = [
    'MaskCLIPInferencer', 'MaskClassification', 'classify_masks', 'draw_mask_classification',
    'init_mask_classifier', 'load_image', 'load_masks'
]
