# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Semantic, instance and panoptic segmentation from one set of proposals.

Mask2Former's inference rules (the authors' post-processing) on the class
logits and mask logits of ``M`` proposals, with the open-vocabulary details
done once: things are the first ``T`` of the ``C`` vocabulary classes, a void
column (the authors' ``'other'``) is the last logit column and is never a
label, and every vocabulary class, the last one included, can be predicted.
"""
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmdet.structures.mask import mask2bbox
from mmengine.model import BaseModule
from mmengine.structures import InstanceData, PixelData
from torch import Tensor

from ..geometry import OriginalMaskLogits
from .bands import INSTANCE_OFFSET, MaskRows, PanopticBands


@MODELS.register_module()
class UniversalPostProcessor(BaseModule):
    """One pass from proposals to ``pred_sem_seg``, ``pred_panoptic_seg`` and
    ``pred_instances``.

    Inputs per image are ``cls_logits`` ``(M, C + 1)`` (last column: void)
    and ``mask_logits`` ``(M, H, W)`` at the output resolution.

    - semantic: ``argmax_c sum_m p(c | m) sigmoid(mask_m)`` over the ``C``
      classes (the void column is dropped after the softmax);
    - panoptic: proposals whose best class (void included) is not void and
      scores above ``object_mask_thr`` compete per pixel by
      ``score * sigmoid(mask)``; a proposal keeps its pixels that also have
      ``sigmoid(mask) >= 0.5``, and is dropped when the pixels it wins are
      less than ``overlap_thr`` of its own ``sigmoid >= 0.5`` area; stuff of
      one class merges into one segment. Ids: ``label`` for stuff, ``label +
      k * 1000`` for the k-th thing (k >= 1); unassigned pixels get ``C``
      (mmdet's VOID);
    - instance: Mask2Former's rule: the top ``max_per_image`` (proposal,
      class) pairs by class probability over all classes, then the pairs of a
      stuff class dropped (``instance_topk='all'``; ``'things'`` takes the top
      pairs among thing classes only, so there are always ``max_per_image``);
      masks ``logit > 0``, score = class probability x mean mask probability
      inside the mask, boxes from the masks.

    Args:
        panoptic_on (bool): produce ``pred_panoptic_seg``. Default True.
        instance_on (bool): produce ``pred_instances``. Default True.
        semantic_on (bool): produce ``pred_sem_seg``. Default True.
        object_mask_thr (float): panoptic score threshold (the authors use
            0.5 on COCO, 0.3 on ADE20K). Default 0.5.
        overlap_thr (float): panoptic kept-area ratio threshold. Default 0.5.
        max_per_image (int): instance top-k. Default 100.
        instance_score_thr (float): instances scoring this or less are
            dropped (0 drops only pairs whose probability underflowed to 0).
            Default 0.
        instance_topk (str): ``'all'`` (Mask2Former's and the authors') or
            ``'things'``, see above. Default ``'all'``.
        semantic_void_label (int, optional): None (Mask2Former's rule) labels
            every pixel with a vocabulary class. An int lets the void class
            compete in the semantic sum: pixels it wins get this label (e.g.
            255, which mmdet's drawing and metrics skip), so that a tiny
            vocabulary does not force every pixel onto one of its names.
            Needs the model's ``void_class``. Default None.
        band_bytes (int, optional): work on bands of image rows such that
            ``max(M, C + 1) x rows x W`` float32 values take at most this
            many bytes (a few such tensors live at once), so memory follows
            the work, not the photo: a 4000x3000 image with 100 proposals is
            4.8 GB per full copy of its mask logits. Results equal one band
            (exactly for tensor inputs; to float rounding of the resampling
            for :class:`~mmmaskclip.models.geometry.OriginalMaskLogits`).
            None: the whole image at once. Default 256 MiB (one band for
            COCO- and ADE20K-sized images).
        init_cfg (dict, optional): initialisation config.
    """

    def __init__(self,
                 panoptic_on: bool = True,
                 instance_on: bool = True,
                 semantic_on: bool = True,
                 object_mask_thr: float = 0.5,
                 overlap_thr: float = 0.5,
                 max_per_image: int = 100,
                 instance_score_thr: float = 0.0,
                 instance_topk: str = 'all',
                 semantic_void_label: Optional[int] = None,
                 band_bytes: Optional[int] = 256 * 2**20,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.panoptic_on, self.instance_on, self.semantic_on = (panoptic_on, instance_on,
                                                                semantic_on)
        self.object_mask_thr = object_mask_thr
        self.overlap_thr = overlap_thr
        self.max_per_image = max_per_image
        self.instance_score_thr = instance_score_thr
        if instance_topk not in ('all', 'things'):
            raise ValueError(f"instance_topk must be 'all' or 'things', got {instance_topk!r}.")
        self.instance_topk = instance_topk
        self.semantic_void_label = semantic_void_label
        if band_bytes is not None and band_bytes < 1:
            raise ValueError(f'band_bytes must be a positive number of bytes or None, got '
                             f'{band_bytes}.')
        self.band_bytes = band_bytes

    def semantic(self, probs: Tensor, mask_logits: Tensor) -> PixelData:
        """``(M, C + 1)`` probabilities, ``(M, H, W)`` -> ``sem_seg`` ``(1, H, W)``
        in ``[0, C)`` (or ``semantic_void_label`` where void wins)."""
        if self.semantic_void_label is None:
            seg = torch.einsum('mc,mhw->chw', probs[:, :-1], mask_logits.sigmoid())
            return PixelData(sem_seg=seg.argmax(0, keepdim=True))
        seg = torch.einsum('mc,mhw->chw', probs, mask_logits.sigmoid()).argmax(0, keepdim=True)
        return PixelData(
            sem_seg=seg.masked_fill(seg == probs.shape[1] - 1, self.semantic_void_label))

    def panoptic(self, probs: Tensor, mask_logits: MaskRows, num_things: int) -> PixelData:
        """``(M, C + 1)`` probabilities, ``(M, H, W)`` -> panoptic ids ``(1, H, W)``."""
        state = PanopticBands(probs, mask_logits.shape[-2:], self.object_mask_thr)
        for start, stop in self.bands(mask_logits.shape, probs.shape[1]):
            state.add(start, stop, mask_logits[state.keep, start:stop])
        return PixelData(sem_seg=state.result(num_things, self.overlap_thr)[None])

    def instance(self, probs: Tensor, mask_logits: MaskRows, num_things: int) -> InstanceData:
        """Top-k (proposal, class) pairs -> masks, labels, scores, boxes of
        thing classes."""
        probs = probs[:, :num_things] if self.instance_topk == 'things' else probs[:, :-1]
        num_classes = max(probs.shape[1], 1)
        num = min(self.max_per_image, probs.numel())
        scores, index = probs.flatten().topk(num) if num else (probs.new_zeros(0),
                                                               probs.new_zeros(0).long())
        proposal, labels = index // num_classes, index % num_classes
        is_thing = labels < num_things
        scores, proposal, labels = scores[is_thing], proposal[is_thing], labels[is_thing]
        # each proposal once, however many classes it pairs with
        unique, pair = proposal.unique(return_inverse=True)
        inside = probs.new_zeros(len(unique))  # sum of sigmoid over the mask
        area = probs.new_zeros(len(unique))
        bands = self.bands(mask_logits.shape, len(unique))
        binary = None
        for start, stop in bands:
            logits = mask_logits[unique, start:stop]
            binary = logits > 0
            inside += (logits.sigmoid() * binary).flatten(1).sum(1)
            area += binary.flatten(1).sum(1)
        scores = scores * (inside / (area + 1e-6))[pair]
        keep = scores > self.instance_score_thr
        height, width = mask_logits.shape[-2:]
        if len(bands) == 1 and binary is not None:
            masks = binary[pair[keep]]
        else:  # a second pass writes the kept masks only
            used, slot = pair[keep].unique(return_inverse=True)
            masks = torch.empty(
                int(keep.sum()), height, width, dtype=torch.bool, device=probs.device)
            for start, stop in self.bands((len(used), height, width), 0):
                masks[:, start:stop] = (mask_logits[unique[used], start:stop] > 0)[slot]
        return InstanceData(
            masks=masks, labels=labels[keep], scores=scores[keep], bboxes=mask2bbox(masks))

    def bands(self, shape: Sequence[int], num_classes: int) -> List[Tuple[int, int]]:
        """Row ranges ``(start, stop)`` of ``(M, H, W)`` masks such that
        ``max(M, num_classes) x rows x W`` floats fit ``band_bytes``."""
        height, width = int(shape[-2]), int(shape[-1])
        if self.band_bytes is None:
            return [(0, height)]
        per_row = 4 * width * max(int(shape[0]), num_classes, 1)
        rows = max(1, self.band_bytes // per_row)
        return [(start, min(start + rows, height)) for start in range(0, height, rows)]

    def forward(self,
                cls_logits: Tensor,
                mask_logits: Union[Tensor, OriginalMaskLogits],
                num_things: int,
                objectness: Optional[Tensor] = None) -> dict:
        """All enabled outputs of one image.

        Args:
            cls_logits (Tensor): ``(M, C + 1)``, last column void (``-inf``
                when there is none).
            mask_logits (Tensor | OriginalMaskLogits): ``(M, H, W)`` at the
                output resolution, or batch masks that give it one band of
                rows at a time.
            num_things (int): the first ``num_things`` classes are things.
            objectness (Tensor, optional): ``(M,)`` in ``[0, 1]``; multiplies
                the class probabilities (not the void one) of each proposal.

        Returns:
            dict: ``pred_sem_seg``, ``pred_panoptic_seg``, ``pred_instances``
            (those enabled).
        """
        if not 0 <= num_things <= cls_logits.shape[1] - 1:
            raise ValueError(f'num_things={num_things} does not fit a vocabulary of '
                             f'{cls_logits.shape[1] - 1} classes.')
        if self.panoptic_on and cls_logits.shape[1] - 1 >= INSTANCE_OFFSET:
            raise ValueError(
                f'Panoptic ids are label + {INSTANCE_OFFSET} x instance (mmdet\'s convention), '
                f'so a vocabulary of {cls_logits.shape[1] - 1} classes cannot be panoptic: use '
                f'at most {INSTANCE_OFFSET - 1} classes, or the semantic and instance tasks only '
                '(panoptic_on=False).')
        probs = cls_logits.softmax(-1)
        if objectness is not None:
            probs = torch.cat([probs[:, :-1] * objectness[:, None], probs[:, -1:]], dim=1)
        masks = MaskRows(mask_logits)
        out = {}
        if self.semantic_on:
            sem = [
                self.semantic(probs, masks[:, start:stop]).sem_seg
                for start, stop in self.bands(masks.shape, probs.shape[1])
            ]
            out['pred_sem_seg'] = PixelData(sem_seg=torch.cat(sem, dim=1))
        if self.panoptic_on:
            out['pred_panoptic_seg'] = self.panoptic(probs, masks, num_things)
        if self.instance_on:
            out['pred_instances'] = self.instance(probs, masks, num_things)
        return out


def void_column(cls_logits: Tensor, valid: Optional[Tensor] = None, append: bool = True) -> Tensor:
    """Make the last column void and route padded proposals to it.

    Args:
        cls_logits (Tensor): ``(..., M, C)`` logits over the vocabulary, or
            ``(..., M, C + 1)`` with a void text column (``append=False``).
        valid (Tensor, optional): bool ``(..., M)``; False rows become void.
        append (bool): append a void column that never wins (``-inf``).

    Returns:
        Tensor: ``(..., M, C + 1)``.
    """
    out = F.pad(cls_logits, (0, 1), value=float('-inf')) if append else cls_logits
    if valid is not None:
        void = torch.full_like(out, float('-inf'))
        void[..., -1] = 0
        out = torch.where(valid[..., None], out, void)
    return out
