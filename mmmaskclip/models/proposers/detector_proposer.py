# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Any mmdet detector as a frozen, class-agnostic mask proposer (paper §3.1)."""
import os.path as osp
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample, SampleList
from mmdet.utils import ConfigType, OptMultiConfig
from mmengine.runner.checkpoint import load_checkpoint
from mmengine.structures import InstanceData
from torch import Tensor

from ...utils import InvalidInputError, user_error
from ..utils import Vocabulary, fill_padding, stack_mask_logits
from .base_proposer import BaseProposer, MaskProposals


@user_error
class ProposerWeightsNotFoundError(RuntimeError):
    """Raised when a proposer checkpoint cannot be found or downloaded."""


@MODELS.register_module()
class DetectorProposer(BaseProposer):
    """Wrap an mmdet detector; only its masks (and objectness) are used.

    Mask2Former-like detectors (with a ``panoptic_head``) give all their
    query masks as logits at the head's resolution (a quarter of the padded
    batch: the encoder resizes them once, as the authors do) and objectness
    ``1 - p(no-object)``; other detectors (e.g. Mask R-CNN) give their
    predicted instance masks as logits ``±mask_logit`` over the padded batch
    and their scores as objectness. Class predictions are never used: a
    class-aware detector becomes class-agnostic here. The padding of the
    batch (outside each sample's ``img_shape``) is zero after the detector's
    normalisation, its pixel mean, as mmdet and detectron2 pad.

    Args:
        detector (dict | str): an mmdet detector's model config, or a config
            file whose ``model`` is used (``'mmdet::mask2former/...py'`` names
            one shipped with mmdet). Its ``data_preprocessor`` says how the
            detector normalises images (``mean``, ``std``, channel order,
            applied here to the MaskCLIP batch); batching and padding are
            MaskCLIP's.
        checkpoint (str, optional): detector weights (path or URL).
        mean (Sequence[float], optional): the normalisation mean (0-255, in
            the detector's channel order), overriding its preprocessor's
            (without a preprocessor, the detector is taken to read RGB).
        std (Sequence[float], optional): likewise, std.
        num_proposals (int, optional): keep the top proposals by objectness.
        mask_logit (float): logit magnitude for binary masks. Default 4.
        init_cfg (dict or list[dict], optional): initialisation config.
    """

    def __init__(self,
                 detector: ConfigType,
                 checkpoint: Optional[str] = None,
                 mean: Optional[Sequence[float]] = None,
                 std: Optional[Sequence[float]] = None,
                 num_proposals: Optional[int] = None,
                 mask_logit: float = 4.0,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        detector = dict(self.detector_model_cfg(detector))
        preprocessor = dict(detector.pop('data_preprocessor', None) or {})
        detector.pop('init_cfg', None)
        mean = preprocessor.get('mean') if mean is None else mean
        std = preprocessor.get('std') if std is None else std
        if mean is None or std is None:
            raise ValueError('DetectorProposer cannot tell how the detector normalises its '
                             'input: its config has no data_preprocessor with mean and std; '
                             'give mean=... and std=... (0-255).')
        self.detector = MODELS.build(detector)
        if checkpoint:
            self._load(checkpoint)
        self.num_proposals, self.mask_logit = num_proposals, mask_logit
        # the batch is RGB; an mmdet detector whose preprocessor swaps no
        # channels takes images as loaded, BGR (without a preprocessor: RGB)
        self.rgb = bool(preprocessor.get('bgr_to_rgb')
                        or preprocessor.get('rgb_to_bgr')) if preprocessor else True
        self.register_buffer('mean', torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('std', torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.freeze()

    @staticmethod
    def detector_model_cfg(detector) -> dict:
        """A model config, or the ``model`` of a config file (``mmdet::...``
        names a config shipped with mmdet, ``mmmaskclip::...`` one of ours,
        e.g. ``'mmmaskclip::proposals/...py'``)."""
        if not isinstance(detector, str):
            return detector
        from mmengine.config import Config
        from mmengine.hub import get_config

        from ...utils import resolve_config_path
        detector = resolve_config_path(detector)
        cfg = get_config(detector) if '::' in detector else Config.fromfile(detector)
        return cfg.model

    def init_weights(self) -> None:
        """Keep the loaded weights (the runner calls this after building)."""

    def _load(self, checkpoint: str) -> None:
        if not checkpoint.startswith(('http://', 'https://', 'open-mmlab://')) and \
                not osp.isfile(checkpoint):
            raise ProposerWeightsNotFoundError(f'Proposer checkpoint not found: {checkpoint}')
        try:
            load_checkpoint(self.detector, checkpoint, map_location='cpu', strict=False)
        except InvalidInputError:  # a local file that is no usable checkpoint
            raise
        except Exception as err:
            target = osp.join(torch.hub.get_dir(), 'checkpoints', osp.basename(checkpoint))
            raise ProposerWeightsNotFoundError(
                f'Could not load the proposer weights {checkpoint} ({type(err).__name__}: '
                f'{err}); download them and put them at {target}, or set '
                "proposer.checkpoint='/path/to/file.pth'.") from err

    def _query_masks(self, x: Tensor, samples: SampleList) -> MaskProposals:
        """The last decoder layer's query masks at the head's own resolution
        (a quarter of the padded batch for Mask2Former), not upsampled: the
        encoder resizes them once, straight to its input size."""
        feats = self.detector.extract_feat(x)
        cls_list, mask_list = self.detector.panoptic_head(feats, samples)
        cls, masks = cls_list[-1], mask_list[-1]
        objectness = 1 - cls.softmax(-1)[..., -1]
        valid = torch.ones(objectness.shape, dtype=torch.bool, device=x.device)
        return MaskProposals(mask_logits=masks, valid=valid, objectness=objectness)

    def _instance_masks(self, x: Tensor, samples: SampleList) -> MaskProposals:
        """Instance masks pasted on the ``img_shape`` part of the padded batch
        as logits ``±mask_logit``; their scores as objectness."""
        results = self.detector.predict(x, samples, rescale=False)
        height, width = x.shape[-2:]
        instances: List[InstanceData] = [r.pred_instances for r in results]
        per_image = []
        for inst in instances:
            masks = inst.masks.to(x.device).float()
            pad = (0, width - masks.shape[-1], 0, height - masks.shape[-2])
            per_image.append(F.pad(self.mask_logit * (2 * masks - 1), pad, value=-self.mask_logit))
        logits, valid, objectness = stack_mask_logits(
            per_image, scores=[inst.scores for inst in instances])
        return MaskProposals(mask_logits=logits, valid=valid, objectness=objectness)

    def propose(self,
                images: Tensor,
                batch_data_samples: SampleList,
                vocabulary: Optional[Vocabulary] = None,
                batch_gt_segments: Optional[List[InstanceData]] = None) -> MaskProposals:
        # metainfo-only copies (the detector writes its predictions into
        # them) in which the transformed image is the original: without
        # rescaling, mask heads paste masks on an ori_shape x scale_factor
        # canvas with boxes of the input frame, which then agree whatever
        # the pipeline packed (semantic pipelines pack no scale_factor)
        batch_data_samples = [
            DetDataSample(
                metainfo=dict(
                    s.metainfo, ori_shape=s.metainfo['img_shape'], scale_factor=(1.0, 1.0)))
            for s in batch_data_samples
        ]
        x = images if self.rgb else images.flip(1)
        x = fill_padding((x - self.mean) / self.std, batch_data_samples, 0.0)
        if hasattr(self.detector, 'panoptic_head'):
            proposals = self._query_masks(x, batch_data_samples)
        else:
            proposals = self._instance_masks(x, batch_data_samples)
        if self.num_proposals and proposals.mask_logits.shape[1] > self.num_proposals:
            score = proposals.objectness.masked_fill(~proposals.valid, -1)
            keep = score.topk(self.num_proposals, dim=1).indices
            gather = keep[..., None, None].expand(-1, -1, *proposals.mask_logits.shape[-2:])
            proposals = MaskProposals(
                mask_logits=proposals.mask_logits.gather(1, gather),
                valid=proposals.valid.gather(1, keep),
                objectness=proposals.objectness.gather(1, keep))
        return proposals
