# Copyright (c) mmmaskclip contributors. All rights reserved.
from .attention_mask import mask_patch_coverage, mask_token_attention_mask
from .mask_token_attention import MaskTokenAttention, MaskTokenBlockInputs
from .relative_mask_attention import QuickGELU, RelativeMaskAttention, mask_patches

__all__ = [
    'mask_patch_coverage', 'mask_token_attention_mask', 'MaskTokenAttention',
    'MaskTokenBlockInputs', 'QuickGELU', 'RelativeMaskAttention', 'mask_patches'
]
