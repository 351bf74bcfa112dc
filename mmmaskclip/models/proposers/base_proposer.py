# Copyright (c) mmmaskclip contributors. All rights reserved.
"""What every proposal source returns, and the frozen-module base class."""
from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch
from mmdet.structures import SampleList
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor

from ..geometry import to_batch_geometry
from ..utils import Vocabulary, stack_mask_logits


@dataclass
class MaskProposals:
    """Class-agnostic mask proposals of a batch.

    Attributes:
        mask_logits (Tensor): ``(B, M, h, w)`` logits covering the padded
            batch image (any resolution; ``h / w`` keeps its aspect).
        valid (Tensor): bool ``(B, M)``, False for padded slots.
        objectness (Tensor, optional): ``(B, M)`` scores in ``[0, 1]`` where
            the proposer has them (e.g. ``1 - p(no-object)``).
    """
    mask_logits: Tensor
    valid: Tensor
    objectness: Optional[Tensor] = None

    @classmethod
    def from_original(cls,
                      per_image: Sequence[Tensor],
                      batch_data_samples: SampleList,
                      batch_size: Sequence[int],
                      scores: Optional[Sequence[Optional[Tensor]]] = None) -> 'MaskProposals':
        """Proposals from masks of the original images: each image's
        ``(M_i, h, w)`` logits follow its pipeline as the image did (resized,
        flipped, padded to the batch ``batch_size``), then form one batch."""
        logits = [
            to_batch_geometry(masks, sample.metainfo, tuple(batch_size))
            for masks, sample in zip(per_image, batch_data_samples)
        ]
        logits, valid, objectness = stack_mask_logits(logits, scores=scores)
        return cls(mask_logits=logits, valid=valid, objectness=objectness)


class BaseProposer(BaseModule):
    """A frozen proposal source: no gradients, always in eval mode.

    Subclasses implement :meth:`propose`.
    """

    def train(self, mode: bool = True) -> 'BaseProposer':
        return super().train(False)

    def freeze(self) -> None:
        for param in self.parameters():
            param.requires_grad_(False)
        self.eval()

    def propose(self,
                images: Tensor,
                batch_data_samples: SampleList,
                vocabulary: Optional[Vocabulary] = None,
                batch_gt_segments: Optional[List[InstanceData]] = None) -> MaskProposals:
        """Make proposals.

        Args:
            images (Tensor): ``(B, 3, Hp, Wp)`` padded RGB batch, 0-255.
            batch_data_samples (list[DetDataSample]): the batch's samples;
                proposers take what they need from them.
            vocabulary (Vocabulary, optional): the batch's vocabulary (which
                labels are things), for proposers that read annotations.
            batch_gt_segments (list[InstanceData], optional): ground-truth
                segments already computed from the samples (see
                :func:`~mmmaskclip.models.utils.gt_segments`), so that they
                are not computed twice in training.

        Returns:
            MaskProposals: the proposals.
        """
        raise NotImplementedError

    def forward(self, *args, **kwargs) -> MaskProposals:
        with torch.no_grad():
            return self.propose(*args, **kwargs)
