# Copyright (c) mmmaskclip contributors. All rights reserved.
from dataclasses import dataclass, field
from typing import List, Optional

from torch import Tensor


@dataclass
class RegionEncoderOutput:
    """What a region encoder (MaskCLIP or the CLIP baseline) returns.

    Attributes:
        region_embeds (Tensor): ``(B, M, E)`` L2-normalised embedding of each
            mask; zero rows where ``valid`` is False.
        image_embeds (Tensor, optional): ``(B, E)`` L2-normalised CLIP image
            embedding (the class token), where the encoder has it for free
            (MaskCLIP's CLIP stream; not the CLIP baseline).
        valid (Tensor): bool ``(B, M)``, False for padded mask slots.
        clip_tokens (Tensor, optional): ``(B, 1 + N, W)`` final CLIP tokens
            (class token and patches, before ``ln_post``), where the encoder
            computes them.
        mask_logits (list[Tensor]): refined mask logits ``(B, M, H, W)`` at
            the encoder's input size, one per refining layer in order (the
            last is the final refinement); empty when no layer refines.
    """
    region_embeds: Tensor
    image_embeds: Optional[Tensor]
    valid: Tensor
    clip_tokens: Optional[Tensor] = None
    mask_logits: List[Tensor] = field(default_factory=list)
