# Copyright (c) mmmaskclip contributors. All rights reserved.
"""The MaskCLIP detector: proposer -> MaskCLIP Visual Encoder -> text
similarities -> losses or universal segmentation (paper Fig. 1)."""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmdet.models.detectors.base import BaseDetector
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig
from mmdet.visualization.palette import get_palette
from mmengine.structures import InstanceData
from torch import Tensor

from ..backbones import RegionEncoderOutput
from ..clip_loader import ClipConfig, build_clip_model, with_clip
from ..geometry import OriginalMaskLogits, images_to_encoder, masks_from_encoder, masks_to_encoder
from ..post_processing import void_column
from ..proposers import MaskProposals
from ..utils import Vocabulary, fill_padding, gt_segments

#: Parts whose weights come from their own sources (CLIP, proposer), not
#: from MaskCLIP checkpoints.
FROZEN_PREFIXES = ('proposer.', 'text_encoder.', 'visual_encoder.clip_visual.')
#: ImageNet's pixel mean (RGB, 0-255): mmdet's and the authors' proposers.
IMAGENET_MEAN = (123.675, 116.28, 103.53)


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
        num_things_classes (int, optional): with ``class_names``, its first
            ``num_things_classes`` names are things and the rest stuff (all
            of them things by default). A vocabulary from the samples has
            ``len(text)`` things, the ``stuff_text`` after them are stuff.
        class_names (Sequence[str], optional): a fixed vocabulary; by default
            it is read from each batch's samples (``text`` and ``stuff_text``
            metainfo, which mmdet datasets add with ``return_classes=True``).
        void_class (str, optional): a text column for this name is appended
            to the vocabulary in training and at test time (the authors'
            ``'other'``): unmatched proposals are its training targets (with
            the head's ``void_loss_weight``, 0 by default) and proposals it
            wins at test time are dropped. None: no void column in training
            (unmatched proposals get no class loss) and one that never wins
            at test time.
        logit_scale (float): class logits = scale x cosine similarity.
        encoder_input_size (tuple[int, int], optional): the padded batch is
            resized to this before CLIP (the authors squash to 336x336);
            None keeps the batch size, padded to a multiple of the patch
            (masks are padded exactly like the image).
        image_resize (dict): how the batch is resized for CLIP: ``mode``
            (default ``'bicubic'``, the authors') and ``antialias`` (default
            True; the authors' torchvision had none: False).
        mask_antialias (bool): antialias proposals where a side shrinks by
            more than 2x to the encoder size (bilinear either way, see
            :func:`~mmmaskclip.models.utils.resize_mask_logits`). Default True.
        image_pad_value (Sequence[float], optional): RGB 0-255 value written
            into the padding of the batch before CLIP: the proposer's pixel
            mean (ImageNet's, the default) is what the authors' CLIP input
            holds there (they pad the normalised batch with zeros, as mmdet
            does; the proposers here do the same for themselves). None keeps
            the data preprocessor's padding (zeros).
        use_objectness (bool): multiply the class probabilities by the
            proposer's objectness (where it has one) at test time; off by
            default, as in the paper, where every score comes from CLIP.
        output_proposals (bool): also give each sample ``pred_proposals``:
            the ``probs`` ``(M, C)`` of its valid proposals over the
            vocabulary (void column dropped) and their final ``mask_logits``
            ``(M, H, W)`` at the output size (refined where RMA is on). The
            mask-classification API reads them. Default False.
        train_cfg (dict, optional): refused: training settings (matching,
            points) are ``head.train_cfg``.
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
                 num_things_classes: Optional[int] = None,
                 class_names: Optional[Sequence[str]] = None,
                 void_class: Optional[str] = 'other',
                 logit_scale: float = 100.0,
                 encoder_input_size: Optional[Tuple[int, int]] = None,
                 image_resize: ConfigType = dict(mode='bicubic', antialias=True),
                 mask_antialias: bool = True,
                 image_pad_value: Optional[Sequence[float]] = IMAGENET_MEAN,
                 use_objectness: bool = False,
                 output_proposals: bool = False,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 data_preprocessor: OptConfigType = None,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if train_cfg:
            raise ValueError('MaskCLIP takes its training settings in head.train_cfg '
                             f'(matching, point sampling), not model.train_cfg={train_cfg}.')
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
        self.image_resize = dict(image_resize)
        self.mask_antialias = mask_antialias
        self.register_buffer(
            'image_pad_value',
            None if image_pad_value is None else torch.tensor(image_pad_value, dtype=torch.float32),
            False)
        self.use_objectness = use_objectness
        self.output_proposals = output_proposals
        self._register_state_dict_hook(_drop_frozen_state)
        self._register_load_state_dict_pre_hook(_fill_frozen_state, with_module=True)

    # ------------------------------------------------------------ plumbing
    def vocabulary(self, batch_data_samples: SampleList) -> Vocabulary:
        """The batch's vocabulary: ``class_names`` (its first
        ``num_things_classes`` things) or the samples' ``text`` (things) and
        ``stuff_text`` (stuff), with ``void_class``."""
        return Vocabulary.of_batch(batch_data_samples, self.class_names, self.num_things_classes,
                                   self.void_class)

    def gt_segments(self,
                    batch_data_samples: SampleList,
                    vocabulary: Optional[Vocabulary] = None) -> List[InstanceData]:
        """Ground-truth things and stuff of each image (see
        :func:`~mmmaskclip.models.utils.gt_segments`)."""
        return gt_segments(batch_data_samples, vocabulary or self.vocabulary(batch_data_samples))

    def clip_images(self, batch_inputs: Tensor) -> Tensor:
        """RGB 0-255 ``(B, 3, Hp, Wp)`` -> CLIP-normalised encoder input
        ``(B, 3, He, We)`` (see :func:`~mmmaskclip.models.geometry.images_to_encoder`)."""
        x = (batch_inputs.float() - self.clip_mean) / self.clip_std
        return images_to_encoder(x, self.visual_encoder.patch_size, self.encoder_input_size,
                                 **self.image_resize)

    def encode(
        self,
        batch_inputs: Tensor,
        batch_data_samples: SampleList,
        vocabulary: Vocabulary,
        batch_gt_segments: Optional[List[InstanceData]] = None
    ) -> Tuple[MaskProposals, RegionEncoderOutput, Tensor]:
        """Proposals, region embeddings and class logits ``(B, M, C')`` over
        ``vocabulary.text`` (``C' = C + 1`` with a void class).

        The refined masks in ``regions.mask_logits`` are in the encoder frame
        (see :meth:`batch_masks`).
        """
        proposals = self.proposer(batch_inputs, batch_data_samples, vocabulary, batch_gt_segments)
        masks = masks_to_encoder(
            proposals.mask_logits,
            batch_inputs.shape[-2:],
            self.visual_encoder.patch_size,
            self.encoder_input_size,
            antialias=self.mask_antialias)
        if self.image_pad_value is not None:
            batch_inputs = fill_padding(batch_inputs, batch_data_samples, self.image_pad_value)
        images = self.clip_images(batch_inputs)
        regions = self.visual_encoder(images, masks, proposals.valid)
        region = regions.region_embeds.float()
        text = self.text_encoder(vocabulary.text).to(region)
        # cosines x 100 in float32 also under autocast (bf16 would err by ~0.5)
        with torch.autocast(region.device.type, enabled=False):
            return proposals, regions, self.logit_scale * region @ text.t()

    def batch_masks(self, proposals: MaskProposals, regions: RegionEncoderOutput,
                    size: Tuple[int, int]) -> List[Tensor]:
        """Every refined mask (the proposals, without RMA) as ``(B, M, h, w)``
        logits that cover exactly the padded batch ``size`` at their own
        resolution (no upsampling: consumers resize lazily)."""
        if not regions.mask_logits:
            return [proposals.mask_logits]
        return [masks_from_encoder(m, size, self.encoder_input_size) for m in regions.mask_logits]

    # ------------------------------------------------------------ modes
    def loss(self, batch_inputs: Tensor, batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """Hungarian-matched CE / BCE / Dice losses (paper §4.2)."""
        if self.head is None:
            raise ValueError('MaskCLIP was built without a head: it cannot be trained.')
        vocabulary = self.vocabulary(batch_data_samples)
        gt = gt_segments(batch_data_samples, vocabulary)
        proposals, regions, cls_logits = self.encode(batch_inputs, batch_data_samples, vocabulary,
                                                     gt)
        size = tuple(batch_inputs.shape[-2:])
        return self.head.loss(
            cls_logits,
            self.batch_masks(proposals, regions, size),
            regions.valid,
            gt, [s.metainfo for s in batch_data_samples],
            has_void=vocabulary.void is not None,
            mask_size=size)

    def predict(self,
                batch_inputs: Tensor,
                batch_data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        """Semantic, panoptic and instance predictions for the vocabulary.

        Each sample gets ``pred_sem_seg``, ``pred_panoptic_seg`` and
        ``pred_instances`` (those the post-processor has enabled), at the
        original image size when ``rescale`` (else at ``img_shape``).
        """
        vocabulary = self.vocabulary(batch_data_samples)
        self.name_labels(vocabulary)
        proposals, regions, cls_logits = self.encode(batch_inputs, batch_data_samples, vocabulary)
        cls_logits = void_column(cls_logits, regions.valid, append=vocabulary.void is None)
        size = tuple(batch_inputs.shape[-2:])
        masks = self.batch_masks(proposals, regions, size)[-1]
        objectness = proposals.objectness if self.use_objectness else None
        for b, (sample, cls, mask) in enumerate(zip(batch_data_samples, cls_logits, masks)):
            mask = self.to_image(mask, sample.metainfo, size, rescale)
            obj = objectness[b] if objectness is not None else None
            for key, value in self.post_processor(cls, mask, vocabulary.num_things, obj).items():
                setattr(sample, key, value)
            if self.output_proposals:
                valid = regions.valid[b]
                sample.pred_proposals = InstanceData(
                    probs=cls[valid].softmax(-1)[:, :-1], mask_logits=mask.full(valid))
        return batch_data_samples

    def name_labels(self, vocabulary: Vocabulary) -> None:
        """Make ``dataset_meta`` (when the model has one) describe the labels
        of the coming predictions: ``classes`` become the vocabulary's names
        and ``palette`` a colour per name (from ``palette_name``, mmdet's
        ``'random'`` by default). The dict is updated in place, so a
        visualiser sharing it (mmdet's ``DetInferencer`` does) names the
        vocabulary's classes."""
        meta = getattr(self, 'dataset_meta', None)
        if not isinstance(meta, dict) or tuple(meta.get('classes') or ()) == vocabulary.names:
            return
        meta['classes'] = vocabulary.names
        meta['palette'] = get_palette(meta.get('palette_name', 'random'), vocabulary.num_classes)

    @staticmethod
    def to_image(masks: Tensor, meta: dict, batch_size: Tuple[int, int],
                 rescale: bool) -> OriginalMaskLogits:
        """Masks ``(M, h, w)`` covering the padded batch ``batch_size`` -> the
        image: upsample to the batch, crop the padding, undo a test-time flip,
        then resize to ``ori_shape`` if ``rescale`` (else stay at
        ``img_shape``), computed one band of rows at a time by whoever reads
        them (``.full()`` gives the whole ``(M, H, W)``)."""
        out_size = meta['ori_shape'][:2] if rescale else meta['img_shape'][:2]
        return OriginalMaskLogits(masks, meta, batch_size, out_size)

    def _forward(self, batch_inputs: Tensor,
                 batch_data_samples: SampleList) -> Tuple[Tensor, List[Tensor]]:
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
    current tensors fill the keys the checkpoint does not have. Not under
    FSDP, whose units hold shards of those tensors (mmengine's FSDP strategy
    loads non-strictly: missing keys keep their values)."""
    if any(type(m).__name__ == 'FullyShardedDataParallel' for m in module.modules()):
        return
    for part in FROZEN_PREFIXES:
        sub = module.get_submodule(part.rstrip('.'))
        for name, tensor in sub.state_dict(prefix=prefix + part).items():
            state_dict.setdefault(name, tensor)
