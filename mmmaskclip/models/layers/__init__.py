# Copyright (c) mmmaskclip contributors. All rights reserved.
from .attention_mask import (mask_patch_coverage, mask_token_attention_bias,
                             mask_token_attention_mask)
from .folded_relative_logits import mask_patches
from .mask_token_attention import MaskTokenAttention, MaskTokenBlockInputs
from .relative_mask_attention import QuickGELU, RelativeMaskAttention

__all__ = [
    'mask_patch_coverage', 'mask_token_attention_bias', 'mask_token_attention_mask',
    'MaskTokenAttention', 'MaskTokenBlockInputs', 'QuickGELU', 'RelativeMaskAttention',
    'mask_patches'
]
