# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Ground-truth segments as proposals, optionally degraded.

The paper's "perfect proposer" (Table 7) and, with noise, the proposal
source of fast tests and of refinement experiments.
"""
from typing import List, Optional

import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.utils import OptMultiConfig
from mmengine.structures import InstanceData
from torch import Tensor

from ..geometry import to_batch_geometry
from ..utils import Vocabulary, gt_segments, stack_mask_logits
from .base_proposer import BaseProposer, MaskProposals


@MODELS.register_module()
class GTMaskProposer(BaseProposer):
    """Propose the ground-truth segments (things and stuff) of each image.

    Each segment ``g`` becomes logits ``scale * (blur(g) - threshold)``: with
    no blur and ``threshold=0.5`` exactly the ground truth; a box blur of
    ``blur_size`` pixels with ``threshold < 0.5`` dilates the masks and rounds
    their corners (``> 0.5`` erodes them), a coarse proposal that mask
    refinement can learn to correct.

    Args:
        scale (float): logit magnitude. Default 4.
        blur_size (int): box-blur kernel (odd pixels; 0 = none). Default 0.
        threshold (float): level of the blurred mask at logit 0. Default 0.5.
        num_random (int): extra random blob proposals per image (never
            matching the ground truth well), like a proposer's false
            positives. Default 0.
        drop_prob (float): probability of dropping each ground-truth
            segment (a missed proposal). Default 0.
        init_cfg (dict or list[dict], optional): initialisation config.
    """

    def __init__(self,
                 scale: float = 4.0,
                 blur_size: int = 0,
                 threshold: float = 0.5,
                 num_random: int = 0,
                 drop_prob: float = 0.0,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if blur_size < 0 or (blur_size and blur_size % 2 == 0):
            raise ValueError(f'blur_size must be 0 or an odd number, got {blur_size}.')
        self.scale, self.blur_size, self.threshold = scale, blur_size, threshold
        self.num_random, self.drop_prob = num_random, drop_prob

    @staticmethod
    def _to_batch(masks: Tensor, meta: dict, size) -> Tensor:
        """Ground-truth masks -> the padded batch frame ``size``.

        Training pipelines pad the masks with the batch; at test time they
        stay at ``img_shape`` (padded here), or, when the annotations are
        loaded after the geometric transforms (mmdet's test pipelines), at
        ``ori_shape`` (resized, flipped and padded as the image was).
        """
        if tuple(masks.shape[-2:]) == tuple(size):
            return masks
        img_h, img_w = meta['img_shape'][:2]
        if tuple(masks.shape[-2:]) == (img_h, img_w):
            return F.pad(masks, (0, size[1] - img_w, 0, size[0] - img_h))
        logits = masks.float() * 2 - 1  # +1 inside, -1 outside
        return to_batch_geometry(logits, meta, size) > 0

    def _segment_logits(self, masks: Tensor) -> Tensor:
        """``(K, H, W)`` bool -> ``(K, H, W)`` logits."""
        x = masks.float()
        if self.blur_size and x.shape[0]:
            pad = self.blur_size // 2
            x = F.avg_pool2d(
                x[:, None], self.blur_size, stride=1, padding=pad, count_include_pad=False)[:, 0]
        return self.scale * (x - self.threshold)

    def _random_logits(self, num: int, size, device) -> Tensor:
        """Smooth random blobs: ``(num, H, W)`` logits."""
        noise = torch.randn(num, 1, 4, 4, device=device)
        return self.scale * F.interpolate(
            noise, size=size, mode='bilinear', align_corners=False)[:, 0]

    def propose(self,
                images: Tensor,
                batch_data_samples: SampleList,
                vocabulary: Optional[Vocabulary] = None,
                batch_gt_segments: Optional[List[InstanceData]] = None) -> MaskProposals:
        if batch_gt_segments is None:
            if not all('gt_sem_seg' in sample or 'masks' in sample.get('gt_instances', {})
                       for sample in batch_data_samples):
                raise ValueError(
                    'GTMaskProposer needs ground-truth segments: it proposes the annotated '
                    'masks (an oracle for evaluation), so it cannot segment images without '
                    'annotations. For inference use a config whose proposer is a '
                    'DetectorProposer or PrecomputedProposer.')
            if vocabulary is None:
                raise ValueError('GTMaskProposer needs the vocabulary (which labels are '
                                 'things) to read the ground-truth segments.')
            batch_gt_segments = gt_segments(batch_data_samples, vocabulary)
        size = tuple(images.shape[-2:])
        per_image = []
        for segments, sample in zip(batch_gt_segments, batch_data_samples):
            masks = segments.masks
            masks = masks.to_tensor(torch.bool, images.device) if hasattr(
                masks, 'to_tensor') else masks.to(images.device).bool()
            if self.drop_prob > 0 and len(masks):
                masks = masks[torch.rand(len(masks), device=images.device) >= self.drop_prob]
            masks = self._to_batch(masks, sample.metainfo, size)
            logits = self._segment_logits(masks)
            if self.num_random:
                logits = torch.cat(
                    [logits, self._random_logits(self.num_random, size, images.device)])
            per_image.append(logits)
        out, valid, _ = stack_mask_logits(per_image)
        return MaskProposals(mask_logits=out, valid=valid)
