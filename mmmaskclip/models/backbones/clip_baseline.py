# Copyright (c) mmmaskclip contributors. All rights reserved.
"""The CLIP baseline of the paper (Appendix A, Algorithm 1).

Each proposal masks the image (``R_i = M_i ⊙ I``) and every masked image
goes through plain CLIP on its own: ``M`` CLIP passes per image, the slow
reference that MaskCLIP's mask class tokens replace.
"""
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmdet.utils import OptMultiConfig
from mmengine.model import BaseModule
from torch import Tensor

from ..clip_loader import ClipConfig, build_clip_model, freeze
from ..geometry import resize_images
from ..utils import prepare_mask_logits
from .encoder_output import RegionEncoderOutput


def mask_box(mask: Tensor) -> Optional[Tuple[int, int, int, int]]:
    """Tight box ``(y0, y1, x0, x1)`` (end-exclusive) of a bool ``(H, W)`` mask,
    or None when the mask is empty."""
    rows = mask.any(dim=1).nonzero()
    if rows.numel() == 0:
        return None
    cols = mask.any(dim=0).nonzero()
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


@MODELS.register_module()
class CLIPBaselineEncoder(BaseModule):
    """Region embeddings by masking the image and running plain CLIP per mask.

    Args:
        clip (dict | nn.Module): open_clip model or its config.
        input_size (int | tuple[int, int], optional): size each masked image
            is resized to before CLIP; defaults to the CLIP's own image size.
        crop_to_box (bool): crop each masked image to its mask's box first
            (what region-crop methods do); the paper's baseline does not.
            Default False.
        background (str): value outside the mask: ``'black'`` (pixel 0, the
            paper's ``M_i ⊙ I``) or ``'mean'`` (CLIP's mean colour, i.e. 0 after
            normalisation). Default ``'black'``.
        chunk_size (int): masked images per CLIP forward; bounds memory.
            Default 16.
        image_mean (Sequence[float], optional): the mean (0-1 scale) the
            inputs were normalised with; defaults to the CLIP's preprocessing
            config or OpenAI's.
        image_std (Sequence[float], optional): likewise for the std.
        image_resize (dict): ``mode`` and ``antialias`` of the resize to
            ``input_size`` (default bicubic, antialiased).
        init_cfg (dict or list[dict], optional): initialisation config.
    """

    def __init__(self,
                 clip: ClipConfig,
                 input_size: Optional[Union[int, Tuple[int, int]]] = None,
                 crop_to_box: bool = False,
                 background: str = 'black',
                 chunk_size: int = 16,
                 image_mean: Optional[Sequence[float]] = None,
                 image_std: Optional[Sequence[float]] = None,
                 image_resize: dict = dict(mode='bicubic', antialias=True),
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
        if background not in ('black', 'mean'):
            raise ValueError(f"background must be 'black' or 'mean', got {background!r}.")
        if chunk_size < 1:
            raise ValueError(f'chunk_size must be >= 1, got {chunk_size}.')
        visual = build_clip_model(clip).visual
        self.clip_visual = freeze(visual)
        self.patch_size = tuple(visual.patch_size)
        size = input_size or visual.image_size
        self.input_size = (size, size) if isinstance(size, int) else tuple(size)
        self.crop_to_box = crop_to_box
        self.background = background
        self.chunk_size = chunk_size
        self.image_resize = dict(image_resize)
        mean = image_mean or getattr(visual, 'image_mean', None) or OPENAI_DATASET_MEAN
        std = image_std or getattr(visual, 'image_std', None) or OPENAI_DATASET_STD
        black = -torch.tensor(mean, dtype=torch.float32) / torch.tensor(std, dtype=torch.float32)
        self.register_buffer('black', black.view(3, 1, 1), persistent=False)

    @property
    def embed_dim(self) -> int:
        """Dimension ``E`` of the region embeddings."""
        return self.clip_visual.output_dim

    def train(self, mode: bool = True) -> 'CLIPBaselineEncoder':
        """Switch mode; CLIP always stays in eval mode."""
        super().train(mode)
        self.clip_visual.eval()
        return self

    def _resize(self, image: Tensor) -> Tensor:
        """``(n, 3, h, w) -> (n, 3, *input_size)`` (the one resize rule of CLIP
        inputs, :func:`~mmmaskclip.models.geometry.resize_images`)."""
        return resize_images(image, self.input_size, **self.image_resize)

    def masked_images(self, image: Tensor, masks: Tensor) -> Tensor:
        """``R_i = M_i ⊙ I`` for one image, resized to CLIP's input.

        Args:
            image (Tensor): ``(3, H, W)`` normalised image.
            masks (Tensor): bool ``(m, H, W)``.

        Returns:
            Tensor: ``(m, 3, *input_size)``.
        """
        fill = (self.black if self.background == 'black' else torch.zeros_like(self.black))
        masked = torch.where(masks[:, None], image[None], fill.to(image.dtype))
        if not self.crop_to_box:
            return self._resize(masked)
        crops = []
        for region, mask in zip(masked, masks):
            box = mask_box(mask)
            if box is not None:
                region = region[:, box[0]:box[1], box[2]:box[3]]
            crops.append(self._resize(region[None]))
        return torch.cat(crops)

    @torch.no_grad()
    def forward(self,
                images: Tensor,
                mask_logits: Union[Tensor, List[Tensor]],
                valid: Optional[Tensor] = None) -> RegionEncoderOutput:
        """Encode each masked image with CLIP.

        Args:
            images (Tensor): ``(B, 3, H, W)`` normalised with CLIP's mean/std.
            mask_logits (Tensor | list[Tensor]): ``(B, M, h, w)`` logits or
                boolean masks at any resolution (binarised at logit >= 0 after
                resizing to ``(H, W)``), or a list of ``(M_i, h_i, w_i)``.
            valid (Tensor, optional): bool ``(B, M)``, False = padding.

        Returns:
            RegionEncoderOutput: region embeddings ``(B, M, E)``; padded slots
            are zero and cost no CLIP pass.
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f'images must be (B, 3, H, W), got {tuple(images.shape)}.')
        masks, valid = prepare_mask_logits(
            mask_logits, tuple(images.shape[-2:]), valid, batch_size=images.shape[0])
        binary = masks >= 0
        num_images, num_masks = binary.shape[:2]
        region_embeds = images.new_zeros(num_images, num_masks, self.embed_dim)
        for b in range(num_images):
            index = valid[b].nonzero().flatten()
            for start in range(0, index.numel(), self.chunk_size):
                chunk = index[start:start + self.chunk_size]
                crops = self.masked_images(images[b], binary[b, chunk])
                # under autocast CLIP returns half precision: normalise in float32
                embeds = F.normalize(self.clip_visual(crops).float(), dim=-1)
                region_embeds[b, chunk] = embeds.to(region_embeds.dtype)
        return RegionEncoderOutput(region_embeds=region_embeds, image_embeds=None, valid=valid)
