# Copyright (c) mmmaskclip contributors. All rights reserved.
from .attention_mask import (PAD_MASK_LOGIT, mask_patch_coverage, mask_token_attention_mask,
                             pad_mask_list, prepare_mask_logits, resize_mask_logits)
from .mask_token_attention import MaskTokenAttention, MaskTokenBlockInputs
from .relative_mask_attention import QuickGELU, RelativeMaskAttention, mask_patches

__all__ = [
    'PAD_MASK_LOGIT', 'mask_patch_coverage', 'mask_token_attention_mask', 'pad_mask_list',
    'prepare_mask_logits', 'resize_mask_logits', 'MaskTokenAttention', 'MaskTokenBlockInputs',
    'QuickGELU', 'RelativeMaskAttention', 'mask_patches'
]
