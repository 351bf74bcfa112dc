# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Masks given by the user as proposals (the mask-classification API)."""
from typing import List, Optional

from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmengine.structures import InstanceData
from torch import Tensor

from ..utils import Vocabulary, as_mask_logits
from .base_proposer import BaseProposer, MaskProposals


@MODELS.register_module()
class GivenMaskProposer(BaseProposer):
    """Propose the masks each sample carries in ``proposals.masks``.

    The masks (bool, 0/1 or logits, ``(M, h, w)`` at any resolution) cover
    the original image; they follow the sample's pipeline as the image did
    (resized to ``img_shape``, flipped, padded to the batch), exactly as
    precomputed proposals do. :func:`mmmaskclip.apis.classify_masks` puts
    them there.
    """

    def propose(self,
                images: Tensor,
                batch_data_samples: SampleList,
                vocabulary: Optional[Vocabulary] = None,
                batch_gt_segments: Optional[List[InstanceData]] = None) -> MaskProposals:
        per_image = []
        for sample in batch_data_samples:
            masks = sample.get('proposals', InstanceData()).get('masks')
            if masks is None:
                raise ValueError('GivenMaskProposer needs the masks of each image in '
                                 'sample.proposals.masks (classify_masks puts them there).')
            per_image.append(as_mask_logits(masks.to(images.device)).float())
        return MaskProposals.from_original(per_image, batch_data_samples, images.shape[-2:])
