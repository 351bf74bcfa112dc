# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Training-free open-vocabulary classification of given masks.

Wires a region encoder (MaskCLIP w/o RMA, or the CLIP baseline) to the CLIP
text encoder: the paper's two training-free rows of Tables 2-4.
"""
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.model import BaseModule
from torch import Tensor

from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptMultiConfig
from ..clip_loader import ClipConfig, build_clip_model, with_clip
from ..geometry import resize_images


@MODELS.register_module()
class OpenVocabMaskClassifier(BaseModule):
    """Classify mask proposals against any vocabulary with a frozen CLIP.

    One CLIP model is built (or loaded) once and shared by the region
    encoder (its vision tower) and the text encoder (its text tower).

    Args:
        clip (dict | nn.Module): open_clip model or its config.
        region_encoder (dict): ``MaskCLIPVisualEncoder`` (mask class tokens)
            or ``CLIPBaselineEncoder`` (Algorithm 1) config, without ``clip``.
        text_encoder (dict): ``MaskCLIPTextEncoder`` config, without ``clip``.
        logit_scale (float): cosine similarities are multiplied by this
            before the softmax. Default 100 (CLIP's trained value, and the
            fixed 1/0.01 of the authors' code).
        input_size (tuple[int, int], optional): ``(H, W)`` images are resized
            to before encoding (multiples of the patch size). Defaults to the
            CLIP's own image size.
        image_resize (dict): ``mode`` and ``antialias`` of that resize, the
            rule of :func:`~mmmaskclip.models.geometry.resize_images` (as in
            ``MaskCLIP``). Default bicubic, antialiased.
        init_cfg (dict or list[dict], optional): initialisation config.
    """

    def __init__(self,
                 clip: ClipConfig,
                 region_encoder: ConfigType,
                 text_encoder: ConfigType,
                 logit_scale: float = 100.0,
                 input_size: Optional[Tuple[int, int]] = None,
                 image_resize: ConfigType = dict(mode='bicubic', antialias=True),
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
        clip_model = build_clip_model(clip)
        visual = clip_model.visual
        mean = getattr(visual, 'image_mean', None) or OPENAI_DATASET_MEAN
        std = getattr(visual, 'image_std', None) or OPENAI_DATASET_STD
        size = input_size or visual.image_size
        self.input_size = (size, size) if isinstance(size, int) else tuple(size)
        self.region_encoder = MODELS.build(with_clip(region_encoder, clip_model))
        self.text_encoder = MODELS.build(with_clip(text_encoder, clip_model))
        self.logit_scale = float(logit_scale)
        self.image_resize = dict(image_resize)
        self.register_buffer('mean', torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('std', torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def preprocess(self, image: Union[np.ndarray, Tensor]) -> Tensor:
        """RGB uint8 image ``(H, W, 3)`` -> normalised ``(1, 3, *input_size)``."""
        if isinstance(image, np.ndarray):
            image = torch.from_numpy(np.array(image))  # a writable copy
        if image.dim() != 3 or image.shape[-1] != 3:
            raise ValueError(f'Expected an RGB image (H, W, 3), got {tuple(image.shape)}.')
        x = image.to(self.device).permute(2, 0, 1)[None].float() / 255.0
        x = resize_images(x, self.input_size, **self.image_resize)
        return (x - self.mean) / self.std

    def forward(self,
                images: Tensor,
                mask_logits: Union[Tensor, List[Tensor]],
                class_names: Sequence[str],
                valid: Optional[Tensor] = None) -> Tensor:
        """Class logits of every mask.

        Args:
            images (Tensor): ``(B, 3, H, W)`` normalised images.
            mask_logits (Tensor | list[Tensor]): ``(B, M, h, w)`` mask logits
                or boolean masks, or a list of ``(M_i, h_i, w_i)``.
            class_names (Sequence[str]): the ``C`` names of the vocabulary;
                commas separate synonyms.
            valid (Tensor, optional): bool ``(B, M)``, False = padding.

        Returns:
            Tensor: ``(B, M, C)`` logits (``logit_scale`` x cosine similarity);
            padded slots are zero.
        """
        regions = self.region_encoder(images, mask_logits, valid)
        text = self.text_encoder(class_names).to(regions.region_embeds)
        return self.logit_scale * regions.region_embeds @ text.t()
