# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Segment Anything's automatic mask generator as a frozen, class-agnostic
proposal source."""
import os.path as osp
from functools import partial
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.utils import OptMultiConfig
from mmengine.structures import InstanceData
from torch import Tensor, nn

from ..geometry import shape2, to_original_geometry
from ..utils import Vocabulary
from .base_proposer import BaseProposer, MaskProposals
from .detector_proposer import ProposerWeightsNotFoundError

#: The official weights of each ``segment_anything.sam_model_registry`` type.
SAM_CHECKPOINT_URLS = {
    'vit_h': 'https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth',
    'vit_l': 'https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth',
    'vit_b': 'https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth',
}
SAM_CHECKPOINT_URLS['default'] = SAM_CHECKPOINT_URLS['vit_h']  # the registry's alias
#: What a proposal's objectness (and its rank for ``max_proposals``) can be.
SAM_SCORES = ('predicted_iou', 'stability_score')


class SAMWeightsNotFoundError(ProposerWeightsNotFoundError):
    """Raised when the SAM checkpoint cannot be found or downloaded."""


def import_segment_anything():
    """The ``segment_anything`` package, or an ImportError saying how to get it."""
    try:
        import segment_anything
    except ImportError as err:
        raise ImportError('SAMProposer needs the segment-anything package: '
                          'pip install segment-anything') from err
    return segment_anything


def build_sam_model(encoder_embed_dim: int = 768,
                    encoder_depth: int = 12,
                    encoder_num_heads: int = 12,
                    encoder_global_attn_indexes: Sequence[int] = (2, 5, 8, 11),
                    image_size: int = 1024,
                    patch_size: int = 16,
                    window_size: int = 14,
                    prompt_embed_dim: int = 256,
                    mask_in_chans: int = 16,
                    decoder_depth: int = 2,
                    decoder_mlp_dim: int = 2048,
                    decoder_num_heads: int = 8,
                    iou_head_depth: int = 3,
                    iou_head_hidden_dim: int = 256) -> nn.Module:
    """A ``segment_anything.modeling.Sam`` (random weights) of any size, built
    from the package's own modules as its ``sam_model_registry`` builds the
    official ones; the defaults are ViT-B's. Small sizes give tiny SAMs for
    tests (e.g. ``image_size=64``, ``encoder_embed_dim=32``)."""
    import_segment_anything()
    from segment_anything.modeling import (ImageEncoderViT, MaskDecoder, PromptEncoder, Sam,
                                           TwoWayTransformer)
    grid = image_size // patch_size
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=encoder_depth,
            embed_dim=encoder_embed_dim,
            img_size=image_size,
            mlp_ratio=4,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            num_heads=encoder_num_heads,
            patch_size=patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=tuple(encoder_global_attn_indexes),
            window_size=window_size,
            out_chans=prompt_embed_dim),
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_embed_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(image_size, image_size),
            mask_in_chans=mask_in_chans),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=decoder_depth,
                embedding_dim=prompt_embed_dim,
                mlp_dim=decoder_mlp_dim,
                num_heads=decoder_num_heads),
            transformer_dim=prompt_embed_dim,
            iou_head_depth=iou_head_depth,
            iou_head_hidden_dim=iou_head_hidden_dim),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375])


def read_sam_weights(checkpoint: str, model_type: Optional[str]) -> dict:
    """The state dict of SAM weights (a path or URL); a missing file or a
    failed download raises :class:`SAMWeightsNotFoundError` saying which
    file to get (the official one of ``model_type``) and how to pass it."""
    if checkpoint.startswith(('http://', 'https://')):
        try:
            return torch.hub.load_state_dict_from_url(checkpoint, map_location='cpu')
        except Exception as err:
            target = osp.join(torch.hub.get_dir(), 'checkpoints', osp.basename(checkpoint))
            raise SAMWeightsNotFoundError(
                f'Could not download the SAM weights {checkpoint} ({type(err).__name__}: '
                f'{err}): download them yourself to {target}, or anywhere and pass their '
                f'path as model.proposer.checkpoint=/path/to/{osp.basename(checkpoint)}.') from err
    if not osp.isfile(checkpoint):
        url = SAM_CHECKPOINT_URLS.get(model_type)
        get = f'download {url}' if url else 'put SAM weights that match model_cfg'
        name = osp.basename(url) if url else 'weights.pth'
        raise SAMWeightsNotFoundError(
            f'SAM checkpoint {checkpoint} not found: {get} to that path, or pass the path of '
            f'a downloaded copy as model.proposer.checkpoint=/path/to/{name}.')
    state = torch.load(checkpoint, map_location='cpu')
    return state.get('state_dict', state)


@MODELS.register_module()
class SAMProposer(BaseProposer):
    """Segment Anything's automatic mask generator as a frozen proposer.

    SAM (Kirillov et al., 2023) prompts its mask decoder with a regular grid
    of points and keeps the confident, stable, non-duplicate masks
    (``segment_anything.SamAutomaticMaskGenerator``); they are class-agnostic
    proposals, with SAM's predicted IoU (or stability score) as objectness.

    SAM runs on each original image, RGB uint8 ``(H0, W0, 3)``: the image is
    recovered from the batch, which MaskCLIP keeps in RGB 0-255 (its data
    preprocessor normalises nothing), with the package's own inverse
    geometry, :func:`~mmmaskclip.models.geometry.to_original_geometry`
    (``img_shape`` cropped out of the padded batch, unflipped, resized to
    ``ori_shape``). This works for every input, dataset files and in-memory
    arrays alike (the inferencer, the APIs); it is exact when the pipeline
    only flips and pads (or upsamples by an integer factor with nearest
    interpolation), and otherwise a resampled copy of the original, which
    SAM resamples to its own input size (1024 pixels on the long side)
    anyway. SAM's boolean masks of the original image become logits
    ``±mask_logit`` and follow the sample's pipeline into the padded batch
    through :meth:`MaskProposals.from_original`, exactly as given and
    precomputed proposals do (so pipelines may resize and flip, not crop).
    Proposals therefore do not depend on the pipeline's resolution (up to
    that resampling), and ``min_mask_region_area`` counts original pixels.

    The SAM model is frozen: eval mode, no gradients, outside every
    optimizer (its parameters do not require gradients) and outside MaskCLIP
    checkpoints (its weights come from ``checkpoint``).

    Args:
        model_type (str): an official SAM, ``'vit_h'``, ``'vit_l'`` or
            ``'vit_b'`` (``segment_anything.sam_model_registry``). Default
            ``'vit_h'``.
        model_cfg (dict, optional): another architecture: keyword arguments
            of :func:`build_sam_model` (e.g. a tiny SAM for tests); it
            replaces ``model_type``.
        checkpoint (str, optional): SAM weights, a path (or URL); the
            official ones are in :data:`SAM_CHECKPOINT_URLS`. None keeps
            random weights, whose proposals are meaningless (tests only).
        points_per_side (int): the prompt grid has ``points_per_side ** 2``
            points. Default 32.
        points_per_batch (int): prompts decoded at once (memory). Default 64.
        pred_iou_thresh (float): drop masks whose predicted IoU is not above
            this (0 keeps all). Default 0.88.
        stability_score_thresh (float): drop masks less stable than this
            (0 keeps all). Default 0.95.
        box_nms_thresh (float): box IoU of duplicate masks. Default 0.7.
        min_mask_region_area (int): remove holes and islands smaller than
            this many original pixels (0: none; needs OpenCV). Default 0.
        max_proposals (int, optional): keep the ``max_proposals`` masks of
            highest ``score`` of each image (all by default).
        score (str): SAM's ``'predicted_iou'`` (clamped to ``[0, 1]``) or
            ``'stability_score'``: objectness and rank of the proposals.
        mask_logit (float): logit magnitude of the binary masks. Default 4.
        generator_cfg (dict, optional): further arguments of
            ``SamAutomaticMaskGenerator`` (e.g. ``crop_n_layers``).
        init_cfg (dict or list[dict], optional): initialisation config.
    """

    def __init__(self,
                 model_type: str = 'vit_h',
                 model_cfg: Optional[dict] = None,
                 checkpoint: Optional[str] = None,
                 points_per_side: int = 32,
                 points_per_batch: int = 64,
                 pred_iou_thresh: float = 0.88,
                 stability_score_thresh: float = 0.95,
                 box_nms_thresh: float = 0.7,
                 min_mask_region_area: int = 0,
                 max_proposals: Optional[int] = None,
                 score: str = 'predicted_iou',
                 mask_logit: float = 4.0,
                 generator_cfg: Optional[dict] = None,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        segment_anything = import_segment_anything()
        if model_cfg is None and model_type not in SAM_CHECKPOINT_URLS:
            raise ValueError(f'Unknown SAM model_type {model_type!r}: use one of '
                             f'{sorted(SAM_CHECKPOINT_URLS)} or give model_cfg.')
        if score not in SAM_SCORES:
            raise ValueError(f'score must be one of {SAM_SCORES}, got {score!r}.')
        if max_proposals is not None and max_proposals < 1:
            raise ValueError(f'max_proposals must be positive, got {max_proposals}.')
        generator = dict(
            points_per_side=points_per_side,
            points_per_batch=points_per_batch,
            pred_iou_thresh=pred_iou_thresh,
            stability_score_thresh=stability_score_thresh,
            box_nms_thresh=box_nms_thresh,
            min_mask_region_area=min_mask_region_area)
        clash = set(generator_cfg or {}) & (set(generator) | {'model', 'output_mode'})
        if clash:
            raise ValueError(f'generator_cfg may not set {sorted(clash)}: they are '
                             'SAMProposer arguments (masks are always binary).')
        model_type = None if model_cfg is not None else model_type
        state = read_sam_weights(checkpoint, model_type) if checkpoint else None
        if model_cfg is not None:
            self.sam = build_sam_model(**model_cfg)
        else:
            self.sam = segment_anything.sam_model_registry[model_type]()
        if state is not None:  # strict: weights of another architecture fail loudly
            self.sam.load_state_dict(state)
        self.generator_cfg = dict(generator, **(generator_cfg or {}), output_mode='binary_mask')
        self.mask_generator()  # SAM checks the arguments now, not at the first batch
        self.max_proposals, self.score, self.mask_logit = max_proposals, score, mask_logit
        self.freeze()

    def mask_generator(self):
        """A ``SamAutomaticMaskGenerator`` around the current :attr:`sam`
        (cheap: made per image, it never holds a stale model or image)."""
        from segment_anything import SamAutomaticMaskGenerator
        return SamAutomaticMaskGenerator(self.sam, **self.generator_cfg)

    def init_weights(self) -> None:
        """Keep SAM's weights (the runner calls this after building)."""

    @staticmethod
    def original_image(image: Tensor, metainfo: dict, batch_size: Sequence[int]) -> np.ndarray:
        """The original image SAM runs on.

        Args:
            image (Tensor): ``(3, Hp, Wp)`` RGB 0-255, one image of the
                padded batch of size ``batch_size``.
            metainfo (dict): its sample's metainfo (``ori_shape``,
                ``img_shape``, flip and scale as the pipeline left them).
            batch_size (Sequence[int]): ``(Hp, Wp)``.

        Returns:
            np.ndarray: RGB uint8 ``(H0, W0, 3)``, ``(H0, W0) = ori_shape``.
        """
        ori = shape2(metainfo['ori_shape'])
        rgb = to_original_geometry(image.float(), metainfo, shape2(batch_size), ori)
        rgb = rgb.round().clamp(0, 255).to(torch.uint8)
        return np.ascontiguousarray(rgb.permute(1, 2, 0).cpu().numpy())

    @torch.no_grad()
    def generate(self, image: np.ndarray) -> Tuple[Tensor, Tensor]:
        """SAM's masks of one image, best first.

        Args:
            image (np.ndarray): RGB uint8 ``(H, W, 3)``.

        Returns:
            tuple[Tensor, Tensor]: bool masks ``(M, H, W)`` and their scores
            ``(M,)`` in ``[0, 1]``, in decreasing score order, at most
            ``max_proposals`` of them.
        """
        records = self.mask_generator().generate(image)
        if not records:
            return torch.zeros(0, *image.shape[:2], dtype=torch.bool), torch.zeros(0)
        scores = torch.tensor([float(r[self.score]) for r in records])
        order = scores.argsort(descending=True, stable=True)[:self.max_proposals]
        masks = np.stack([records[i]['segmentation'] for i in order.tolist()])
        return torch.from_numpy(masks), scores[order].clamp(0, 1)

    def propose(self,
                images: Tensor,
                batch_data_samples: SampleList,
                vocabulary: Optional[Vocabulary] = None,
                batch_gt_segments: Optional[List[InstanceData]] = None) -> MaskProposals:
        """SAM's proposals of a batch.

        Args:
            images (Tensor): ``(B, 3, Hp, Wp)`` padded RGB batch, 0-255.
            batch_data_samples (list[DetDataSample]): the samples; their
                metainfo gives each image's geometry (``ori_shape``,
                ``img_shape``, ``scale_factor``, ``flip``).
            vocabulary (Vocabulary, optional): unused.
            batch_gt_segments (list[InstanceData], optional): unused.

        Returns:
            MaskProposals: logits ``(B, M, Hp, Wp)`` (``±mask_logit`` inside
            ``img_shape``, padding outside every mask), validity ``(B, M)``
            and objectness ``(B, M)`` (the ``score``).
        """
        logits, scores = [], []
        for image, sample in zip(images, batch_data_samples):
            masks, score = self.generate(
                self.original_image(image, sample.metainfo, images.shape[-2:]))
            masks = masks.to(images.device)
            logits.append(torch.where(masks, self.mask_logit, -self.mask_logit).float())
            scores.append(score.to(images.device))
        return MaskProposals.from_original(logits, batch_data_samples, images.shape[-2:], scores)
