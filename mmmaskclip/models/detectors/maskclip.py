# Copyright (c) mmmaskclip contributors. All rights reserved.
"""The MaskCLIP detector: proposer -> MaskCLIP Visual Encoder -> text
similarities -> losses or universal segmentation (paper Fig. 1)."""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.structures import InstanceData
from torch import Tensor

from mmdet.models.detectors.base import BaseDetector
from mmdet.models.utils import preprocess_panoptic_gt
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig
from ..backbones import RegionEncoderOutput
from ..clip_loader import ClipConfig, build_clip_model, with_clip
from ..geometry import to_original_geometry
from ..post_processing import void_column
from ..proposers import GTMaskProposer, MaskProposals

#: Parts whose weights come from their own sources (CLIP, proposer), not
#: from MaskCLIP checkpoints.
FROZEN_PREFIXES = ('proposer.', 'text_encoder.', 'visual_encoder.clip_visual.')


@MODELS.register_module()
class MaskCLIP(BaseDetector):
    """MaskCLIP: open-vocabulary universal segmentation with a frozen CLIP.

    Args:
        clip (dict | nn.Module): open_clip model or its config; shared by
            the visual and text encoders.
        proposer (dict): a class-agnostic proposal source, e.g.
            ``DetectorProposer`` (an mmdet detector) or ``GTMaskProposer``.
        visual_encoder (dict): ``MaskCLIPVisualEncoder`` config (without
            ``clip``); Relative Mask Attention layers go in its
            ``mask_attention_overrides``.
        text_encoder (dict): ``MaskCLIPTextEncoder`` config (without ``clip``).
        head (dict, optional): ``MaskCLIPHead`` (matching and losses); only
            needed for training.
        post_processor (dict): semantic + instance + panoptic outputs
            (``UniversalPostProcessor``); ``test_cfg`` entries override it.
        num_things_classes (int): with ``class_names``, its first
            ``num_things_classes`` names are things and the rest stuff (a
            vocabulary from the samples has ``len(text)`` things, the
            ``stuff_text`` after them are stuff).
        class_names (Sequence[str], optional): a fixed vocabulary; by default
            it is read from each batch's samples (``text`` and ``stuff_text``
            metainfo, which mmdet datasets add with ``return_classes=True``).
        void_class (str, optional): at test time a text column for this name
            is appended and proposals it wins are dropped (the authors'
            ``'other'``); None appends a column that never wins.
        logit_scale (float): class logits = scale x cosine similarity.
        encoder_input_size (tuple[int, int], optional): the padded batch is
            resized to this before CLIP (the authors squash to 336x336);
            None keeps the batch size, padded to a multiple of the patch.
        use_objectness (bool): multiply the class probabilities by the
            proposer's objectness (where it has one) at test time; off by
            default, as in the paper, where every score comes from CLIP.
        train_cfg (dict, optional): unused (the head has its own).
        test_cfg (dict, optional): overrides of ``post_processor``
            (``panoptic_on``, ``instance_on``, ``semantic_on``,
            ``object_mask_thr``, ``overlap_thr``, ``max_per_image``).
        data_preprocessor (dict, optional): must leave images in RGB 0-255
            (no mean/std): CLIP and the proposer normalise for themselves.
        init_cfg (dict or list[dict], optional): initialisation config.
    """

    def __init__(self,
                 clip: ClipConfig,
                 proposer: ConfigType,
                 visual_encoder: ConfigType = dict(type='MaskCLIPVisualEncoder'),
                 text_encoder: ConfigType = dict(type='MaskCLIPTextEncoder'),
                 head: OptConfigType = dict(type='MaskCLIPHead'),
                 post_processor: ConfigType = dict(type='UniversalPostProcessor'),
                 num_things_classes: int = 80,
                 class_names: Optional[Sequence[str]] = None,
                 void_class: Optional[str] = 'other',
                 logit_scale: float = 100.0,
                 encoder_input_size: Optional[Tuple[int, int]] = None,
                 use_objectness: bool = False,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 data_preprocessor: OptConfigType = None,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
        clip_model = build_clip_model(clip)
        visual = clip_model.visual
        mean = getattr(visual, 'image_mean', None) or OPENAI_DATASET_MEAN
        std = getattr(visual, 'image_std', None) or OPENAI_DATASET_STD
        self.register_buffer('clip_mean', 255 * torch.tensor(mean).view(1, 3, 1, 1), False)
        self.register_buffer('clip_std', 255 * torch.tensor(std).view(1, 3, 1, 1), False)
        self.proposer = MODELS.build(proposer)
        self.visual_encoder = MODELS.build(with_clip(visual_encoder, clip_model))
        self.text_encoder = MODELS.build(with_clip(text_encoder, clip_model))
        self.head = MODELS.build(head) if head else None
        self.post_processor = MODELS.build(dict(post_processor, **(test_cfg or {})))
        self.num_things_classes = num_things_classes
        self.class_names = list(class_names) if class_names else None
        self.void_class = void_class
        self.logit_scale = float(logit_scale)
        self.encoder_input_size = tuple(encoder_input_size) if encoder_input_size else None
        self.use_objectness = use_objectness
        self._register_state_dict_hook(_drop_frozen_state)
        self._register_load_state_dict_pre_hook(_fill_frozen_state, with_module=True)

    # ------------------------------------------------------------ plumbing
    def vocabulary(self, batch_data_samples: SampleList) -> List[str]:
        """The class names of this batch (``C`` of them): things, then stuff."""
        if self.class_names:
            return self.class_names
        meta = batch_data_samples[0].metainfo if batch_data_samples else {}
        if not meta.get('text'):
            raise ValueError(
                'MaskCLIP has no vocabulary: set model.class_names, or build the dataset '
                "with return_classes=True and add 'text' (and 'stuff_text' for panoptic "
                "datasets) to PackDetInputs' meta_keys.")
        return list(meta['text']) + list(meta.get('stuff_text') or [])

    def num_things(self, batch_data_samples: SampleList) -> int:
        """How many of the vocabulary's first classes are things: with a
        vocabulary from the samples, their ``text`` (``stuff_text`` are the
        stuff; a vocabulary without it is all things); with ``class_names``,
        ``num_things_classes``."""
        meta = batch_data_samples[0].metainfo if batch_data_samples else {}
        if not self.class_names and meta.get('text'):
            return len(meta['text'])
        return self.num_things_classes

    def gt_segments(self, batch_data_samples: SampleList) -> List[InstanceData]:
        """Ground-truth things and stuff of each image as ``labels`` ``(K,)``
        and bool ``masks`` ``(K, Hp, Wp)`` (mmdet's panoptic preprocessing)."""
        segments = []
        num_things = self.num_things(batch_data_samples)
        num_stuff = len(self.vocabulary(batch_data_samples)) - num_things
        for sample in batch_data_samples:
            # long: uint16 maps (more than 255 classes) support few torch ops
            sem_seg = sample.gt_sem_seg.sem_seg.long() if 'gt_sem_seg' in sample else None
            if 'masks' not in sample.get('gt_instances', {}):  # semantic: a segment a class
                labels = sem_seg.unique()
                labels = labels[labels < num_things + num_stuff]
                masks = sem_seg[0][None] == labels[:, None, None]
                segments.append(InstanceData(labels=labels.long(), masks=masks))
                continue
            labels, masks = preprocess_panoptic_gt(
                sample.gt_instances.labels, sample.gt_instances.masks, sem_seg,
                num_things, num_stuff)
            segments.append(InstanceData(labels=labels, masks=masks.bool()))
        return segments

    def clip_images(self, batch_inputs: Tensor) -> Tensor:
        """RGB 0-255 ``(B, 3, Hp, Wp)`` -> CLIP-normalised encoder input."""
        x = batch_inputs.float()
        if self.encoder_input_size and tuple(x.shape[-2:]) != self.encoder_input_size:
            x = F.interpolate(x, size=self.encoder_input_size, mode='bilinear',
                              align_corners=False, antialias=True)
        x = (x - self.clip_mean) / self.clip_std
        ph, pw = self.visual_encoder.patch_size
        pad_h, pad_w = -x.shape[-2] % ph, -x.shape[-1] % pw
        return F.pad(x, (0, pad_w, 0, pad_h)) if pad_h or pad_w else x

    def to_batch_extent(self, masks: Tensor, size: Tuple[int, int]) -> Tensor:
        """Encoder-resolution masks -> ``(B, M, *size)`` over the padded batch."""
        if self.encoder_input_size is None:
            return masks[..., :size[0], :size[1]]
        return F.interpolate(masks, size=size, mode='bilinear', align_corners=False)

    def encode(self, batch_inputs: Tensor, batch_data_samples: SampleList,
               class_names: Sequence[str],
               batch_gt_segments: Optional[List[InstanceData]] = None
               ) -> Tuple[MaskProposals, RegionEncoderOutput, Tensor]:
        """Proposals, region embeddings and class logits ``(B, M, C)``."""
        if isinstance(self.proposer, GTMaskProposer) and batch_gt_segments is None:
            batch_gt_segments = self.gt_segments(batch_data_samples)
        proposals = self.proposer(batch_inputs, batch_data_samples, batch_gt_segments)
        regions = self.visual_encoder(self.clip_images(batch_inputs), proposals.mask_logits,
                                      proposals.valid)
        text = self.text_encoder(class_names).to(regions.region_embeds)
        return proposals, regions, self.logit_scale * regions.region_embeds @ text.t()

    def final_masks(self, proposals: MaskProposals, regions: RegionEncoderOutput,
                    size: Tuple[int, int]) -> Tensor:
        """The last refined masks (or the proposals, without RMA) at ``size``."""
        if regions.mask_logits:
            return self.to_batch_extent(regions.mask_logits[-1], size)
        return F.interpolate(proposals.mask_logits, size=size, mode='bilinear',
                             align_corners=False)

    # ------------------------------------------------------------ modes
    def loss(self, batch_inputs: Tensor, batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """Hungarian-matched CE / BCE / Dice losses (paper §4.2)."""
        if self.head is None:
            raise ValueError('MaskCLIP was built without a head: it cannot be trained.')
        gt = self.gt_segments(batch_data_samples)
        proposals, regions, cls_logits = self.encode(
            batch_inputs, batch_data_samples, self.vocabulary(batch_data_samples), gt)
        size = tuple(batch_inputs.shape[-2:])
        masks = [self.to_batch_extent(m, size) for m in regions.mask_logits] or [
            self.final_masks(proposals, regions, size)]
        return self.head.loss(cls_logits, masks, regions.valid, gt,
                              [s.metainfo for s in batch_data_samples])

    def predict(self, batch_inputs: Tensor, batch_data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        """Semantic, panoptic and instance predictions for the vocabulary.

        Each sample gets ``pred_sem_seg``, ``pred_panoptic_seg`` and
        ``pred_instances`` (those the post-processor has enabled), at the
        original image size when ``rescale`` (else at ``img_shape``).
        """
        names = self.vocabulary(batch_data_samples)
        num_things = self.num_things(batch_data_samples)
        with_void = names + [self.void_class] if self.void_class else names
        proposals, regions, cls_logits = self.encode(batch_inputs, batch_data_samples,
                                                     with_void)
        cls_logits = void_column(cls_logits, regions.valid, append=not self.void_class)
        masks = self.final_masks(proposals, regions, tuple(batch_inputs.shape[-2:]))
        objectness = proposals.objectness if self.use_objectness else None
        for b, (sample, cls, mask) in enumerate(zip(batch_data_samples, cls_logits, masks)):
            mask = self.to_image(mask, sample.metainfo, rescale)
            obj = objectness[b] if objectness is not None else None
            for key, value in self.post_processor(cls, mask, num_things, obj).items():
                setattr(sample, key, value)
            if 'pred_sem_seg' in sample and 'gt_sem_seg' in sample:
                # mmdet's SemSegMetric reads the ignore value from the prediction
                # (255 if unset; ADE20K-847 and PASCAL Context 459 use 65535)
                ignore = sample.gt_sem_seg.metainfo.get('ignore_index')
                if ignore is not None:
                    sample.pred_sem_seg.set_metainfo(dict(ignore_index=ignore))
        return batch_data_samples

    @staticmethod
    def to_image(masks: Tensor, meta: dict, rescale: bool) -> Tensor:
        """Masks over the padded batch ``(M, Hp, Wp)`` -> the image: crop the
        padding, undo a test-time flip, then resize to ``ori_shape`` if
        ``rescale`` (else stay at ``img_shape``)."""
        out_size = meta['ori_shape'][:2] if rescale else meta['img_shape'][:2]
        return to_original_geometry(masks, meta, masks.shape[-2:], out_size)

    def _forward(self, batch_inputs: Tensor, batch_data_samples: SampleList
                 ) -> Tuple[Tensor, List[Tensor]]:
        """Class logits ``(B, M, C)`` and every refined mask ``(B, M, H, W)``."""
        _, regions, cls_logits = self.encode(batch_inputs, batch_data_samples,
                                             self.vocabulary(batch_data_samples))
        return cls_logits, regions.mask_logits

    def extract_feat(self, batch_inputs: Tensor):
        """Region embeddings need proposals: use :meth:`encode`."""
        raise NotImplementedError('MaskCLIP has no proposal-free features; use encode().')


def _drop_frozen_state(module, state_dict, prefix, local_metadata):
    """Checkpoints keep the trainable parts only: CLIP and the proposer load
    from their own weights, named in the config."""
    frozen = tuple(prefix + p for p in FROZEN_PREFIXES)
    for key in [k for k in state_dict if k.startswith(frozen)]:
        del state_dict[key]
    return state_dict


def _fill_frozen_state(module, state_dict, prefix, local_metadata, strict, missing_keys,
                       unexpected_keys, error_msgs):
    """Loading a MaskCLIP checkpoint keeps the frozen parts as built: their
    current tensors fill the keys the checkpoint does not have."""
    for part in FROZEN_PREFIXES:
        sub = module.get_submodule(part.rstrip('.'))
        for name, tensor in sub.state_dict(prefix=prefix + part).items():
            state_dict.setdefault(name, tensor)
