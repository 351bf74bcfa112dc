# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Python API: classify given masks of an image with any vocabulary."""
import contextlib
from dataclasses import dataclass
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.config import Config, ConfigDict
from mmengine.registry import init_default_scope

from ..models.utils import first_occurrences, parse_class_names
from ..utils import InvalidInputError, check_device, read_image
from ..utils.config import load_config
from ..utils.input_checks import check_channel_order, warn_unusual_image_size
from .inference_pipeline import check_image_size, inference_pipeline
from .mask_inputs import load_mask_logits, load_masks, mask_logits_tensor, warn_empty_masks
from .model_checks import build_model, load_weights

__all__ = [
    'MaskClassification', 'DEFAULT_CONFIG', 'init_mask_classifier', 'load_image', 'load_masks',
    'load_mask_logits', 'check_class_names', 'classify_masks'
]

ImageType = Union[str, np.ndarray]


@dataclass
class MaskClassification:
    """Result of :func:`classify_masks` for one image.

    Attributes:
        probs (np.ndarray): ``(M, C)`` softmax over the vocabulary.
        labels (np.ndarray): ``(M,)`` index of the best class of each mask.
        scores (np.ndarray): ``(M,)`` probability of that class.
        class_names (list[str]): the vocabulary, in column order.
        mask_logits (np.ndarray, optional): ``(M, H, W)`` final mask logits
            at the image size (refined where the model has RMA layers).
    """
    probs: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    class_names: List[str]
    mask_logits: Optional[np.ndarray] = None

    def names(self) -> List[str]:
        """The predicted class name of each mask."""
        return [self.class_names[i] for i in self.labels]


#: The default model: MaskCLIP w/o RMA (training-free) on ViT-L/14@336px.
DEFAULT_CONFIG = 'mmmaskclip::maskclip/maskclip-wo-rma_vit-l-14-336_coco-panoptic-val.py'


def init_mask_classifier(config: Union[str, Config] = DEFAULT_CONFIG,
                         device: str = 'cpu',
                         cfg_options: Optional[dict] = None) -> torch.nn.Module:
    """A ``MaskCLIP`` that classifies the masks it is given.

    Any MaskCLIP config works (its model, data preprocessor and test
    pipeline are used): its proposer becomes ``GivenMaskProposer``, it has no
    head, no void class (probabilities over exactly the vocabulary) and no
    post-processing, and it reports ``pred_proposals``.

    Args:
        config (str | Config): a MaskCLIP config; ``mmmaskclip::`` names one of
            ours. Default: MaskCLIP w/o RMA (training-free); a CLIP-baseline
            config gives the paper's Appendix A baseline, an RMA config with
            ``load_from`` a trained model (refined masks included).
        device (str): ``'cpu'``, ``'cuda'`` or ``'cuda:N'``.
        cfg_options (dict, optional): overrides, as ``--cfg-options`` does
            (e.g. ``{'model.clip.pretrained': '/path/to/ViT-L-14-336px.pt'}``).

    Returns:
        nn.Module: the model in eval mode on ``device``, its config as ``cfg``.

    Raises:
        InvalidInputError: one sentence naming the bad input: a device this
            machine lacks, a missing config, an unknown registry type, an
            ``encoder_input_size`` that is no multiple of the patch, or a
            ``load_from`` checkpoint that is unusable or of another variant
            (its mismatching keys named).
    """
    import mmmaskclip  # noqa: F401  (registers the modules)
    check_device(device)
    if isinstance(config, Config):
        cfg = config
        cfg.merge_from_dict(cfg_options or {})
    else:
        cfg = load_config(config, cfg_options)
    cfg.model.proposer = ConfigDict(type='GivenMaskProposer')  # replaced, not merged
    cfg.model.update(head=None, void_class=None, output_proposals=True)
    cfg.model.post_processor.update(panoptic_on=False, instance_on=False, semantic_on=False)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    model = build_model(cfg)
    load_weights(model, cfg.get('load_from') or None)
    model.cfg = cfg
    return model.to(device).eval()


def load_image(image: ImageType, channel_order: str = 'bgr') -> np.ndarray:
    """An image path or array -> RGB uint8 ``(H, W, 3)``.

    Files are read as the test pipeline reads them (see
    :func:`~mmmaskclip.utils.read_image`: any grayscale, RGBA, 16-bit,
    palette or CMYK file, the EXIF orientation applied); ``channel_order``
    does not apply to them.

    Args:
        image (str | np.ndarray): a path, or a uint8 ``(H, W, 3)`` array.
        channel_order (str): the order of an array's channels: ``'bgr'``
            (default: mmdet's and OpenCV's convention, ``cv2.imread`` arrays
            work as they are) or ``'rgb'`` (PIL, matplotlib).

    Raises:
        InvalidInputError: naming the file (missing, empty, not an image,
            truncated), the array's wrong shape or dtype, or an unknown
            ``channel_order``.
    """
    check_channel_order(channel_order)
    if isinstance(image, str):
        return read_image(image, channel_order='rgb')
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or not image.size:
        raise InvalidInputError('Image arrays must be uint8 (H, W, 3) with H, W >= 1 (BGR, or RGB '
                                f"with channel_order='rgb'), got {image.dtype} {image.shape}: "
                                'convert it, e.g. read it with cv2.imread(path).')
    return np.ascontiguousarray(image[..., ::-1]) if channel_order == 'bgr' else image


def check_class_names(class_names: Sequence[str]) -> List[str]:
    """The vocabulary of :func:`classify_masks`: strings, none empty or
    whitespace-only, at least one; duplicates (up to case and whitespace)
    dropped with an ``InputWarning`` naming them, the first occurrence
    kept, as :func:`~mmmaskclip.apis.build_vocabulary` does.

    Raises:
        TypeError | InvalidInputError: naming the bad entry.
    """
    names = parse_class_names(list(class_names))
    if not names:
        raise InvalidInputError('The vocabulary is empty: give at least one class name.')
    return [names[i] for i in first_occurrences(names)]


@torch.no_grad()
def classify_masks(model: torch.nn.Module,
                   image: ImageType,
                   masks: Union[str, np.ndarray, torch.Tensor],
                   class_names: Sequence[str],
                   dtype: Optional[str] = None,
                   mask_type: str = 'auto',
                   channel_order: str = 'bgr') -> MaskClassification:
    """Classify the masks of one image against ``class_names``.

    The image goes through the model's own test pipeline and data
    preprocessor, exactly as ``tools/test.py`` and the inferencer feed it.

    Warnings (``InputWarning``, one sentence each, the result is kept): an
    image smaller than a CLIP patch, or one beyond 10:1 that the model
    squashes to its ``encoder_input_size`` (the remedy:
    ``cfg_options={'model.encoder_input_size': None}``, see
    :func:`~mmmaskclip.utils.input_checks.warn_unusual_image_size`); empty
    masks, named (their scores are still reported, their labels mean
    nothing); mask values that contradict ``mask_type`` (e.g. logits with no
    negative value: every pixel would be inside).

    Args:
        model (nn.Module): from :func:`init_mask_classifier`.
        image (str | np.ndarray): a path, or a uint8 ``(H, W, 3)`` array in
            ``channel_order``.
        masks (str | np.ndarray | Tensor): ``(M, H', W')`` masks of the
            whole image (any resolution) or a file; their values are read
            by ``mask_type``, see :func:`load_mask_logits`.
        class_names (Sequence[str]): the vocabulary; commas join synonyms.
            A name equal to an earlier one up to case and whitespace is
            dropped with an ``InputWarning`` (the first is kept, see
            :func:`check_class_names`); ``class_names`` of the result is the
            vocabulary used.
        dtype (str, optional): ``'bfloat16'`` or ``'float16'`` runs the model
            under ``torch.autocast`` (mixed precision, the weights stay
            float32); None (or ``'float32'``) runs in float32.
        mask_type (str): how mask values are read: ``'binary'`` (non-zero is
            inside), ``'prob'`` (probabilities, inside where ``>= 0.5``),
            ``'logit'`` (inside where ``>= 0``) or ``'auto'`` (default:
            booleans, integers and 0/1 floats are binary, other floats in
            [0, 1] probabilities, any other floats logits).
        channel_order (str): the channel order of an image array: ``'bgr'``
            (default, mmdet's and OpenCV's convention: ``cv2.imread`` arrays
            work as they are) or ``'rgb'`` (PIL, matplotlib). Files are read
            as they are, whatever it says.

    Returns:
        MaskClassification: per-mask probabilities, labels and scores, and
        the final masks (refined where RMA is on), all float32.

    Raises:
        ValueError: for an unknown ``dtype``; ``UnsupportedAutocastError``
            (a ``ValueError``) if torch cannot autocast to it on the model's
            device; an empty vocabulary or name; ``InvalidInputError`` for an
            unreadable image or masks, an unknown ``mask_type`` or
            ``channel_order`` (see :func:`load_image`,
            :func:`load_mask_logits`). All before the model runs.
    """
    from mmengine.dataset import Compose, pseudo_collate
    from mmengine.structures import InstanceData

    from mmmaskclip.engine import check_autocast, model_device_type
    from mmmaskclip.engine.loops import autocast_dtype as parse_dtype
    if isinstance(class_names, str):
        raise TypeError('class_names must be a list of names, not one string.')
    class_names = check_class_names(class_names)
    autocast_dtype = parse_dtype(dtype)
    device_type = model_device_type(model)
    if autocast_dtype is not None:
        check_autocast(device_type, autocast_dtype)
    rgb = load_image(image, channel_order)
    logits = mask_logits_tensor(masks, mask_type)
    name = f'image {image}' if isinstance(image, str) else 'the image array'
    transforms = inference_pipeline(model.cfg)
    check_image_size(transforms, rgb.shape, image if isinstance(image, str) else 'array')
    encoder = getattr(model, 'visual_encoder', None)
    warn_unusual_image_size(*rgb.shape[:2], getattr(encoder, 'patch_size', 14),
                            getattr(model, 'encoder_input_size', None), name)
    warn_empty_masks(logits)
    data = Compose(transforms)(
        dict(img=np.ascontiguousarray(rgb[..., ::-1]), img_id=0, text=class_names))
    data['data_samples'].proposals = InstanceData(masks=logits)
    autocast = contextlib.nullcontext() if autocast_dtype is None else torch.autocast(
        device_type, dtype=autocast_dtype)
    with autocast:
        pred = model.test_step(pseudo_collate([data]))[0].pred_proposals
    probs = pred.probs.float().cpu().numpy()
    labels = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64)
    scores = probs[np.arange(len(probs)), labels] if len(probs) else np.zeros(0)
    return MaskClassification(
        probs=probs,
        labels=labels,
        scores=scores,
        class_names=class_names,
        mask_logits=pred.mask_logits.float().cpu().numpy())
