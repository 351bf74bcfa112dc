# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Python API: classify given masks of an image with any vocabulary."""
import contextlib
import os.path as osp
from dataclasses import dataclass
from typing import List, Optional, Sequence, Union

import mmcv
import numpy as np
import torch
from mmdet.registry import MODELS
from mmengine.config import Config, ConfigDict
from mmengine.registry import init_default_scope

from .inference_pipeline import inference_pipeline

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
    """
    import mmmaskclip  # noqa: F401  (registers the modules)
    from mmmaskclip.utils import resolve_config_path
    cfg = config if isinstance(config, Config) else Config.fromfile(resolve_config_path(config))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.model.proposer = ConfigDict(type='GivenMaskProposer')  # replaced, not merged
    cfg.model.update(head=None, void_class=None, output_proposals=True)
    cfg.model.post_processor.update(panoptic_on=False, instance_on=False, semantic_on=False)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    model = MODELS.build(cfg.model)
    if cfg.get('load_from'):
        from mmengine.runner import load_checkpoint
        load_checkpoint(model, cfg.load_from, map_location='cpu')
    model.cfg = cfg
    return model.to(device).eval()


def load_image(image: ImageType) -> np.ndarray:
    """An image path or array -> RGB uint8 ``(H, W, 3)``."""
    if isinstance(image, str):
        if not osp.isfile(image):
            raise FileNotFoundError(f'Image not found: {image}')
        return mmcv.imread(image, channel_order='rgb')
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError('Images must be RGB uint8 arrays (H, W, 3), got '
                         f'{image.dtype} {image.shape}.')
    return image


def load_masks(masks: Union[str, np.ndarray, torch.Tensor]) -> np.ndarray:
    """Masks from a file or array -> bool ``(M, H, W)``.

    Files: a ``.npy``/``.npz`` of ``(M, H, W)`` masks or logits (> 0 is
    inside), or a label-map image (PNG) where every value except 0 is one
    mask (0 = unlabelled); a COCO-panoptic RGB PNG is read as ids
    ``R + 256 G + 256² B``.
    """
    if isinstance(masks, str):
        if not osp.isfile(masks):
            raise FileNotFoundError(f'Mask file not found: {masks}')
        if masks.endswith(('.npy', '.npz')):
            data = np.load(masks)
            arr = data[data.files[0]] if isinstance(data, np.lib.npyio.NpzFile) else data
            masks = arr
        else:
            label = mmcv.imread(masks, flag='unchanged', channel_order='rgb')
            if label.ndim == 3:
                label = label[..., :3].astype(np.int64)
                label = label[..., 0] + 256 * label[..., 1] + 65536 * label[..., 2]
            ids = [i for i in np.unique(label) if i != 0]
            return np.stack([label == i for i in ids]) if ids else np.zeros(
                (0, *label.shape), dtype=bool)
    arr = masks.cpu().numpy() if isinstance(masks, torch.Tensor) else np.asarray(masks)
    if arr.ndim != 3:
        raise ValueError(f'Masks must be (M, H, W), got shape {arr.shape}.')
    return arr > 0 if arr.dtype != bool else arr


@torch.no_grad()
def classify_masks(model: torch.nn.Module,
                   image: ImageType,
                   masks: Union[str, np.ndarray, torch.Tensor],
                   class_names: Sequence[str],
                   dtype: Optional[str] = None) -> MaskClassification:
    """Classify the masks of one image against ``class_names``.

    The image goes through the model's own test pipeline and data
    preprocessor, exactly as ``tools/test.py`` and the inferencer feed it.

    Args:
        model (nn.Module): from :func:`init_mask_classifier`.
        image (str | np.ndarray): path, or RGB uint8 ``(H, W, 3)``.
        masks (str | np.ndarray | Tensor): ``(M, H', W')`` masks of the
            whole image (any resolution; bool, 0/1 or logits) or a file, see
            :func:`load_masks`.
        class_names (Sequence[str]): the vocabulary; commas join synonyms.
        dtype (str, optional): ``'bfloat16'`` or ``'float16'`` runs the model
            under ``torch.autocast`` (mixed precision, the weights stay
            float32); None (or ``'float32'``) runs in float32.

    Returns:
        MaskClassification: per-mask probabilities, labels and scores, and
        the final masks (refined where RMA is on), all float32.

    Raises:
        ValueError: for an unknown ``dtype``; ``UnsupportedAutocastError``
            (a ``ValueError``) if torch cannot autocast to it on the model's
            device.
    """
    from mmengine.dataset import Compose, pseudo_collate
    from mmengine.structures import InstanceData

    from mmmaskclip.engine import check_autocast, model_device_type
    from mmmaskclip.engine.loops import autocast_dtype as parse_dtype
    if isinstance(class_names, str):
        raise TypeError('class_names must be a list of names, not one string.')
    autocast_dtype = parse_dtype(dtype)
    device_type = model_device_type(model)
    if autocast_dtype is not None:
        check_autocast(device_type, autocast_dtype)
    rgb = load_image(image)
    binary = load_masks(masks)
    pipeline = Compose(inference_pipeline(model.cfg))
    data = pipeline(
        dict(img=np.ascontiguousarray(rgb[..., ::-1]), img_id=0, text=list(class_names)))
    data['data_samples'].proposals = InstanceData(masks=torch.from_numpy(binary))
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
        class_names=list(class_names),
        mask_logits=pred.mask_logits.float().cpu().numpy())
