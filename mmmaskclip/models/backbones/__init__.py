# Copyright (c) mmmaskclip contributors. All rights reserved.
from .clip_baseline import CLIPBaselineEncoder
from .encoder_output import RegionEncoderOutput
from .maskclip_visual_encoder import MaskCLIPVisualEncoder, interpolate_pos_embed

__all__ = [
    'CLIPBaselineEncoder', 'MaskCLIPVisualEncoder', 'RegionEncoderOutput', 'interpolate_pos_embed'
]
