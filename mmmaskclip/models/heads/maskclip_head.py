# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Training losses of MaskCLIP (paper §4.2; the authors' settings in
docs/reproduction.md).

The head owns no parameters: the MaskCLIP detector computes the class logits
(text similarities of the mask class tokens) and the refined masks of every
Relative Mask Attention (RMA) layer; this head matches the proposals to the
ground-truth segments and computes Mask2Former-style losses on them.
"""
import copy
from typing import List, Optional, Sequence, Tuple, Union

import torch
from mmdet.registry import MODELS, TASK_UTILS
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig, reduce_mean
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor

from .head_inputs import as_layer_list, check_head_inputs, gt_mask_tensor
from .point_sampling import OptSize, sample_points, uncertain_point_coords

#: Training config used for every key ``train_cfg`` leaves out.
DEFAULT_TRAIN_CFG = dict(
    num_points=12544,
    oversample_ratio=3.0,
    importance_sample_ratio=0.75,
    assigner=dict(
        type='HungarianAssigner',
        match_costs=[
            dict(type='ClassificationCost', weight=2.0),
            dict(type='CrossEntropyLossCost', weight=5.0, use_sigmoid=True),
            dict(type='DiceCost', weight=5.0, pred_act=True, eps=1.0)
        ]),
    sampler=dict(type='MaskPseudoSampler'))

#: Per-image match: (matched proposal indices, their GT indices), both (P,).
MatchResult = Tuple[Tensor, Tensor]


def _zero_loss(x: Tensor) -> Tensor:
    """A zero scalar connected to ``x``'s graph.

    Same value and gradient (zero) as ``x.sum() * 0``, but it stays 0 when
    ``x`` holds non-finite values (e.g. padded proposal slots).
    """
    return x.flatten()[:0].sum()


@MODELS.register_module()
class MaskCLIPHead(BaseModule):
    """Matching and losses for training MaskCLIP's RMA layers.

    For a batch of ``B`` images with ``M`` proposals each (``C`` training
    classes, ``L`` RMA layers):

    - **Matching** (per image, no gradient): valid proposals and GT segments
      (things and stuff alike) are matched one-to-one by ``assigner`` (the
      Hungarian assigner by default) on the class logits and the **final**
      masks ``mask_logits[-1]``. Mask costs are computed on ``num_points``
      points drawn uniformly at random in normalised image coordinates, the
      same points for predictions and GTs (as mmdet's Mask2Former does), so
      GT masks may have another resolution than the predictions. Padded
      proposals (``valid`` False) are never matched. The one assignment is
      reused for every RMA layer's masks (the proposals are the same mask
      class tokens through all layers).
    - **Class loss** ``loss_cls``: cross-entropy over the class logits,
      matched proposals targeting their GT class. With a void column
      (``has_void``, the last column: the authors' ``'other'``), unmatched
      valid proposals target it with weight ``void_loss_weight`` (the
      authors' 0: they still shape the softmax through the matched terms'
      normaliser, which includes the void logit); without one they get no
      class loss. Normalised by the sum of the weights (a weighted mean, as
      ``F.cross_entropy(..., weight)`` in the authors' and detectron2's
      Mask2Former).
    - **Mask losses** ``loss_mask`` (BCE, averaged over points) and
      ``loss_dice`` on matched pairs, on ``num_points`` points per pair
      chosen by Mask2Former's importance sampling; masks of a lower
      resolution than the batch they cover (``mask_size``) are read as if
      bilinearly resized to it (:func:`sample_points`).
    - **Auxiliary** ``d{i}.loss_mask`` / ``d{i}.loss_dice`` for
      ``i = 0 .. L-2``: the same mask losses on each earlier RMA layer's
      (true intermediate) masks, with the final layer's assignment.

    Mask losses are normalised by the number of matched pairs, averaged over
    GPUs with ``reduce_mean`` and clamped to at least 1. With no matched pair
    in the batch (e.g. no GT), every loss is a zero still connected to the
    graph, never NaN.

    Args:
        loss_cls (dict): softmax classification loss config.
        loss_mask (dict): sigmoid BCE mask loss config.
        loss_dice (dict): Dice mask loss config.
        train_cfg (dict, optional): ``num_points``, ``oversample_ratio``,
            ``importance_sample_ratio``, ``assigner`` and ``sampler``; keys
            left out take the values of :data:`DEFAULT_TRAIN_CFG` (a given
            ``assigner`` replaces the default one as a whole).
        aux_mask_loss (bool): add the auxiliary mask losses of the
            intermediate RMA layers. Defaults to True.
        void_loss_weight (float): class-loss weight of proposals targeting
            the void column (the authors' ``NO_OBJECT_WEIGHT``). Default 0.
        resize_for_points (bool): read points of lower-resolution masks as if
            resized to ``mask_size`` (True); False samples them directly, as
            the authors do on their 336x336 masks (bilinear sampling of a
            bilinear upsampling differs slightly from direct sampling).
        init_cfg (dict or list[dict], optional): initialisation config.
    """

    def __init__(self,
                 loss_cls: ConfigType = dict(
                     type='CrossEntropyLoss', use_sigmoid=False, loss_weight=2.0, reduction='mean'),
                 loss_mask: ConfigType = dict(
                     type='CrossEntropyLoss', use_sigmoid=True, reduction='mean', loss_weight=5.0),
                 loss_dice: ConfigType = dict(
                     type='DiceLoss',
                     use_sigmoid=True,
                     activate=True,
                     reduction='mean',
                     naive_dice=True,
                     eps=1.0,
                     loss_weight=5.0),
                 train_cfg: OptConfigType = None,
                 aux_mask_loss: bool = True,
                 void_loss_weight: float = 0.0,
                 resize_for_points: bool = True,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        cfg = copy.deepcopy(DEFAULT_TRAIN_CFG)
        cfg.update(copy.deepcopy(dict(train_cfg or {})))
        self.train_cfg = cfg
        self.num_points = int(cfg['num_points'])
        self.oversample_ratio = float(cfg['oversample_ratio'])
        self.importance_sample_ratio = float(cfg['importance_sample_ratio'])
        assert self.num_points > 0, 'num_points must be positive'
        self.assigner = TASK_UTILS.build(cfg['assigner'])
        self.sampler = TASK_UTILS.build(cfg['sampler'], default_args=dict(context=self))
        self.aux_mask_loss = aux_mask_loss
        self.void_loss_weight = float(void_loss_weight)
        self.resize_for_points = resize_for_points
        self.loss_cls = MODELS.build(loss_cls)
        self.loss_mask = MODELS.build(loss_mask)
        self.loss_dice = MODELS.build(loss_dice)

    # ------------------------------------------------------------------ inputs
    def _prepare(self, cls_logits: Tensor, mask_logits: Union[Tensor, Sequence[Tensor]],
                 valid: Tensor, batch_gt_instances: Sequence[InstanceData],
                 batch_img_metas: Optional[Sequence[dict]], mask_size: OptSize) -> tuple:
        """Checked inputs of :meth:`match` and :meth:`loss`.

        Returns:
            tuple: the list of mask-logit layers, per-image GT labels ``(K,)``
            and masks ``(K, Hp, Wp)`` on the logits' device, the image metas
            and the ``mask_size`` that points are read in (None unless
            ``resize_for_points``).
        """
        mask_logits = as_layer_list(mask_logits)
        check_head_inputs(cls_logits, mask_logits, valid, batch_gt_instances)
        device = cls_logits.device
        if batch_img_metas is None:
            batch_img_metas = [{} for _ in batch_gt_instances]
        gt_labels_list = [gt.labels.to(device) for gt in batch_gt_instances]
        gt_masks_list = [gt_mask_tensor(gt, device) for gt in batch_gt_instances]
        mask_size = mask_size if self.resize_for_points else None
        return mask_logits, gt_labels_list, gt_masks_list, batch_img_metas, mask_size

    # ---------------------------------------------------------------- matching
    @torch.no_grad()
    def _match_single(self,
                      cls_logit: Tensor,
                      mask_logit: Tensor,
                      valid: Tensor,
                      gt_labels: Tensor,
                      gt_masks: Tensor,
                      img_meta: dict,
                      mask_size: OptSize = None) -> MatchResult:
        """Hungarian matching for one image.

        Args:
            cls_logit (Tensor): ``(M, C)`` class logits (a void column
                included: it takes part in the softmax of the class cost).
            mask_logit (Tensor): ``(M, h, w)`` final mask logits covering
                the padded batch (read as resized to ``mask_size``).
            valid (Tensor): ``(M,)`` bool, False for padded slots.
            gt_labels (Tensor): ``(K,)`` long labels in ``[0, C)``.
            gt_masks (Tensor): ``(K, Hp, Wp)`` binary masks.
            img_meta (dict): image meta information (passed to the assigner).
            mask_size (tuple[int, int], optional): see :func:`sample_points`.

        Returns:
            tuple[Tensor, Tensor]: ``(P,)`` matched proposal indices (into
            all ``M`` slots, ascending) and ``(P,)`` their GT indices.
        """
        device = cls_logit.device
        prop_inds = torch.nonzero(valid, as_tuple=False).squeeze(1)
        num_gts, num_preds = gt_labels.numel(), prop_inds.numel()
        if num_gts == 0 or num_preds == 0:
            empty = torch.zeros(0, dtype=torch.long, device=device)
            return empty, empty.clone()
        scores = cls_logit[prop_inds].float()
        preds = mask_logit[prop_inds].float().unsqueeze(1)
        # the same uniformly random points for predictions and GTs
        coords = torch.rand(1, self.num_points, 2, device=device)
        pred_points = sample_points(preds, coords.repeat(num_preds, 1, 1), mask_size).squeeze(1)
        gt_points = sample_points(gt_masks.unsqueeze(1).float(), coords.repeat(num_gts, 1,
                                                                               1)).squeeze(1)
        pred_instances = InstanceData(scores=scores, masks=pred_points)
        gt_instances = InstanceData(labels=gt_labels.to(device), masks=gt_points)
        assign_result = self.assigner.assign(
            pred_instances=pred_instances, gt_instances=gt_instances, img_meta=img_meta)
        sampling_result = self.sampler.sample(
            assign_result=assign_result, pred_instances=pred_instances, gt_instances=gt_instances)
        pos_gt_inds = sampling_result.pos_assigned_gt_inds.long()
        return prop_inds[sampling_result.pos_inds], pos_gt_inds

    def _match(self,
               cls_logits: Tensor,
               final_masks: Tensor,
               valid: Tensor,
               gt_labels_list: List[Tensor],
               gt_masks_list: List[Tensor],
               batch_img_metas: Sequence[dict],
               mask_size: OptSize = None) -> List[MatchResult]:
        return [
            self._match_single(cls_logits[i].detach(), final_masks[i].detach(), valid[i].bool(),
                               gt_labels_list[i], gt_masks_list[i], batch_img_metas[i], mask_size)
            for i in range(cls_logits.shape[0])
        ]

    def match(self,
              cls_logits: Tensor,
              mask_logits: Union[Tensor, Sequence[Tensor]],
              valid: Tensor,
              batch_gt_instances: Sequence[InstanceData],
              batch_img_metas: Optional[Sequence[dict]] = None,
              mask_size: OptSize = None) -> List[MatchResult]:
        """Match proposals to GT segments, image by image (no gradient).

        Args:
            cls_logits (Tensor): ``(B, M, C)`` class logits.
            mask_logits (Tensor | list[Tensor]): ``(B, M, H, W)`` final mask
                logits, or the list of every RMA layer's (the last is used).
            valid (Tensor): ``(B, M)`` bool, False for padded proposal slots.
            batch_gt_instances (list[InstanceData]): per image ``labels``
                ``(K,)`` and ``masks`` ``(K, Hp, Wp)`` (tensor or
                ``BitmapMasks``).
            batch_img_metas (list[dict], optional): image meta information.
            mask_size (tuple[int, int], optional): the padded batch size the
                masks stand for, see :func:`sample_points`.

        Returns:
            list[tuple[Tensor, Tensor]]: per image ``(pos_proposal_inds,
            pos_gt_inds)``, both ``(P_b,)`` long; proposal indices index all
            ``M`` slots and ascend.
        """
        mask_logits, gt_labels_list, gt_masks_list, batch_img_metas, mask_size = self._prepare(
            cls_logits, mask_logits, valid, batch_gt_instances, batch_img_metas, mask_size)
        return self._match(cls_logits, mask_logits[-1], valid, gt_labels_list, gt_masks_list,
                           batch_img_metas, mask_size)

    # ------------------------------------------------------------------ losses
    def _loss_masks_single(self,
                           mask_logits: Tensor,
                           matches: List[MatchResult],
                           pos_gt_masks: List[Tensor],
                           num_total: float,
                           mask_size: OptSize = None) -> Tuple[Tensor, Tensor]:
        """BCE and Dice losses of one RMA layer's masks on the matched pairs.

        Args:
            mask_logits (Tensor): ``(B, M, H, W)`` mask logits of one layer.
            matches (list[tuple[Tensor, Tensor]]): per-image matches.
            pos_gt_masks (list[Tensor]): per image ``(P_b, Hp, Wp)`` GT masks
                of the matched pairs, in match order.
            num_total (float): normalising number of matched pairs.
            mask_size (tuple[int, int], optional): see :func:`sample_points`.

        Returns:
            tuple[Tensor, Tensor]: ``loss_mask`` and ``loss_dice`` scalars.
        """
        counts = [len(prop_inds) for prop_inds, _ in matches]
        if sum(counts) == 0:
            return _zero_loss(mask_logits), _zero_loss(mask_logits)
        img_inds = torch.cat([
            torch.full((n, ), i, dtype=torch.long, device=mask_logits.device)
            for i, n in enumerate(counts)
        ])
        prop_inds = torch.cat([prop_inds for prop_inds, _ in matches])
        # (P, 1, H, W)
        preds = mask_logits[img_inds, prop_inds].float().unsqueeze(1)
        with torch.no_grad():
            # (P, num_points, 2), importance-sampled on this layer's masks
            coords = uncertain_point_coords(preds, self.num_points, self.oversample_ratio,
                                            self.importance_sample_ratio, mask_size)
            point_targets = torch.cat([
                sample_points(gt.unsqueeze(1).float(), img_coords).squeeze(1)
                for gt, img_coords in zip(pos_gt_masks, coords.split(counts)) if len(gt)
            ])
        # (P, num_points)
        point_preds = sample_points(preds, coords, mask_size).squeeze(1)
        loss_dice = self.loss_dice(point_preds, point_targets, avg_factor=num_total)
        loss_mask = self.loss_mask(
            point_preds.reshape(-1),
            point_targets.reshape(-1),
            avg_factor=num_total * self.num_points)
        return loss_mask, loss_dice

    def loss_cls_weighted(self, cls_logits: Tensor, valid: Tensor, matches: List[MatchResult],
                          gt_labels_list: List[Tensor], has_void: bool) -> Tensor:
        """Class loss of all valid proposals (see the class docstring).

        Args:
            cls_logits (Tensor): ``(B, M, C')`` logits (``C' = C + 1`` with a
                void column).
            valid (Tensor): bool ``(B, M)``.
            matches (list[tuple[Tensor, Tensor]]): per-image matches.
            gt_labels_list (list[Tensor]): per-image GT labels in ``[0, C)``.
            has_void (bool): the last column is void, the target of the
                unmatched proposals (weight ``void_loss_weight``).

        Returns:
            Tensor: the weighted mean cross-entropy (times ``loss_weight``).
        """
        void = cls_logits.shape[-1] - 1
        labels = torch.full(valid.shape, void, dtype=torch.long, device=valid.device)
        weights = torch.full(
            valid.shape, self.void_loss_weight if has_void else 0.0, device=valid.device)
        for i, (prop_inds, gt_inds) in enumerate(matches):
            labels[i, prop_inds] = gt_labels_list[i][gt_inds].long()
            weights[i, prop_inds] = 1.0
        valid = valid.bool()
        if not valid.any():
            return _zero_loss(cls_logits)
        logits, labels, weights = cls_logits[valid].float(), labels[valid], weights[valid]
        return self.loss_cls(logits, labels, weights, avg_factor=max(float(weights.sum()), 1.0))

    def loss(self,
             cls_logits: Tensor,
             mask_logits: Union[Tensor, Sequence[Tensor]],
             valid: Tensor,
             batch_gt_instances: Sequence[InstanceData],
             batch_img_metas: Optional[Sequence[dict]] = None,
             has_void: bool = False,
             mask_size: OptSize = None) -> dict:
        """Match, then compute the class and (auxiliary) mask losses.

        Args:
            cls_logits (Tensor): ``(B, M, C)`` logits over the ``C`` training
                classes (logit scale times region-text cosine similarity), or
                ``(B, M, C + 1)`` with a void column (``has_void``).
            mask_logits (list[Tensor]): ``L`` tensors ``(B, M, h, w)``, the
                refined mask logits of every RMA layer in order; the last is
                the final mask. They cover the padded batch image, at its
                resolution or a lower one (``mask_size``).
            valid (Tensor): ``(B, M)`` bool, False for padded proposal slots
                (never matched, no loss).
            batch_gt_instances (list[InstanceData]): per image ``labels``
                ``(K,)`` long in ``[0, C)`` and ``masks`` ``(K, Hp, Wp)``
                (bool/uint8 tensor or ``BitmapMasks``) at the padded batch
                size; ``K`` may be 0.
            batch_img_metas (list[dict], optional): image meta information.
            has_void (bool): the last class column is void (``'other'``).
            mask_size (tuple[int, int], optional): the padded batch size
                ``(Hp, Wp)`` that lower-resolution ``mask_logits`` stand for
                (points are read as if they were bilinearly resized to it).

        Returns:
            dict[str, Tensor]: ``loss_cls``, ``loss_mask``, ``loss_dice`` and,
            when ``aux_mask_loss`` and ``L > 1``, ``d{i}.loss_mask`` and
            ``d{i}.loss_dice`` for ``i = 0 .. L-2``.
        """
        mask_logits, gt_labels_list, gt_masks_list, batch_img_metas, mask_size = self._prepare(
            cls_logits, mask_logits, valid, batch_gt_instances, batch_img_metas, mask_size)
        device = cls_logits.device
        matches = self._match(cls_logits, mask_logits[-1], valid, gt_labels_list, gt_masks_list,
                              batch_img_metas, mask_size)

        num_pos = sum(len(prop_inds) for prop_inds, _ in matches)
        # always reduced (also with no match) so that every rank takes part
        num_total = reduce_mean(torch.tensor(float(num_pos), device=device))
        num_total = max(float(num_total), 1.0)

        losses = dict(
            loss_cls=self.loss_cls_weighted(cls_logits, valid, matches, gt_labels_list, has_void))
        pos_gt_masks = [masks[gt_inds] for masks, (_, gt_inds) in zip(gt_masks_list, matches)]
        losses['loss_mask'], losses['loss_dice'] = self._loss_masks_single(
            mask_logits[-1], matches, pos_gt_masks, num_total, mask_size)
        if self.aux_mask_loss:
            for i, layer_masks in enumerate(mask_logits[:-1]):
                loss_mask, loss_dice = self._loss_masks_single(layer_masks, matches, pos_gt_masks,
                                                               num_total, mask_size)
                losses[f'd{i}.loss_mask'] = loss_mask
                losses[f'd{i}.loss_dice'] = loss_dice
        return losses
