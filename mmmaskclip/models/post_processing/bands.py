# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Post-processing one band of image rows at a time: memory follows the
work, not the photo."""
from typing import Sequence, Union

import torch
from torch import Tensor

from ..geometry import OriginalMaskLogits

#: mmdet's panoptic id convention: ``label + instance_id * INSTANCE_OFFSET``.
INSTANCE_OFFSET = 1000


class MaskRows:
    """``(M, H, W)`` mask logits indexed as ``masks[proposals, start:stop]``,
    from a tensor or, one band of rows at a time, from
    :class:`~mmmaskclip.models.geometry.OriginalMaskLogits`."""

    def __init__(self, masks: Union[Tensor, OriginalMaskLogits, 'MaskRows']) -> None:
        self.masks = masks.masks if isinstance(masks, MaskRows) else masks
        self.shape = tuple(self.masks.shape)

    def __getitem__(self, key: tuple) -> Tensor:
        index, rows = key
        if isinstance(self.masks, Tensor):
            return self.masks[index, rows]
        index = None if isinstance(index, slice) and index == slice(None) else index
        return self.masks.rows(rows.start or 0, min(rows.stop, self.shape[1]), index)


class PanopticBands:
    """Mask2Former's panoptic rule, accumulated over bands of rows: the
    winning proposal of each pixel and whether its own mask covers it; the
    per-proposal areas that decide which proposals stay."""

    def __init__(self, probs: Tensor, size: Sequence[int], object_mask_thr: float) -> None:
        self.num_classes = probs.shape[1] - 1
        scores, labels = probs.max(-1)
        self.keep = (labels != self.num_classes) & (scores > object_mask_thr)
        self.scores, self.labels = scores[self.keep], labels[self.keep]
        num = len(self.labels)
        self.winner = torch.zeros(*size, dtype=torch.int32, device=probs.device)
        self.covered = torch.zeros(*size, dtype=torch.bool, device=probs.device)
        self.own_area, self.won_area, self.kept_area = (
            torch.zeros(num, dtype=torch.long, device=probs.device) for _ in range(3))

    def add(self, start: int, stop: int, mask_logits: Tensor) -> None:
        """Masks of the kept proposals on rows ``start:stop``."""
        if not len(self.labels):
            return
        masks = mask_logits.sigmoid()
        winner = (self.scores[:, None, None] * masks).argmax(0)
        own = masks >= 0.5
        covered = own.gather(0, winner[None])[0]
        num = len(self.labels)
        self.own_area += own.flatten(1).sum(1)
        self.won_area += torch.bincount(winner.flatten(), minlength=num)
        self.kept_area += torch.bincount(winner[covered], minlength=num)
        self.winner[start:stop] = winner
        self.covered[start:stop] = covered

    def result(self, num_things: int, overlap_thr: float) -> Tensor:
        """``(H, W)`` int32 ids: ``label`` for stuff, ``label + k * 1000``
        for the k-th kept thing, ``C`` (VOID) elsewhere."""
        ids = torch.full((len(self.labels) + 1, ), self.num_classes, dtype=torch.int32)
        instance_id = 1
        for k, label in enumerate(self.labels.tolist()):
            own, won = int(self.own_area[k]), int(self.won_area[k])
            if own == 0 or not int(self.kept_area[k]) or won / own < overlap_thr:
                continue
            if label < num_things:
                ids[k] = label + instance_id * INSTANCE_OFFSET
                instance_id += 1
            else:  # stuff of one class shares one segment id
                ids[k] = label
        winner = self.winner.masked_fill(~self.covered, len(self.labels)).long()
        return ids.to(winner.device)[winner]
