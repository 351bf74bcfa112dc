# Copyright (c) mmmaskclip contributors. All rights reserved.
"""The test pipeline of a config, for images that come without annotations."""
import copy
from typing import List, Optional, Sequence

from mmengine.config import Config

from ..utils import InvalidInputError
from ..utils.config import load_config

#: Transforms that read annotations: images to segment have none.
ANNOTATION_LOADERS = ('LoadAnnotations', 'LoadPanopticAnnotations', 'mmdet.LoadAnnotations',
                      'mmdet.LoadPanopticAnnotations', 'SetSegMapPath')
#: What MaskCLIP reads from each sample, besides the image geometry.
VOCABULARY_KEYS = ('text', 'stuff_text')
#: mmdet's default meta keys of ``PackDetInputs``.
DEFAULT_META_KEYS = ('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'flip',
                     'flip_direction')


def inference_pipeline(cfg: Config, loader: str = 'mmdet.InferencerLoader') -> List[dict]:
    """``cfg``'s test pipeline without annotation loading, its image loading
    by ``loader`` (paths or arrays, as mmdet's inferencer does; None keeps
    it), packing the vocabulary into each sample.

    Returns:
        list[dict]: the transform configs.
    """
    pipeline = [
        copy.deepcopy(t) for t in cfg.test_dataloader.dataset.pipeline
        if t['type'] not in ANNOTATION_LOADERS
    ]
    if loader is not None and 'LoadImage' in pipeline[0]['type']:
        pipeline[0] = dict(type=loader)
    pack = pipeline[-1]
    keys = tuple(pack.get('meta_keys', DEFAULT_META_KEYS))
    pack['meta_keys'] = keys + tuple(k for k in VOCABULARY_KEYS if k not in keys)
    return pipeline


def check_image_size(pipeline: Sequence[dict], shape: Sequence[int], name: str) -> None:
    """Refuse an image that a keep-ratio ``Resize`` of ``pipeline`` would
    shrink to a side of 0 pixels (e.g. 10 x 4000 to a 96 x 96 scale), where
    mmcv would fail inside OpenCV.

    Args:
        pipeline (Sequence[dict]): the transform configs (see
            :func:`inference_pipeline`).
        shape (Sequence[int]): the image's ``(H, W, ...)``.
        name (str): the image, for the message.

    Raises:
        InvalidInputError: naming the image, its size and the resize.
    """
    import mmcv
    height, width = int(shape[0]), int(shape[1])
    for transform in pipeline:
        kind = str(transform.get('type', '')).split('.')[-1]
        if kind != 'Resize' or not transform.get('keep_ratio') or not transform.get('scale'):
            continue
        scale = transform['scale']
        scale = (scale, scale) if isinstance(scale, int) else tuple(scale)
        new_w, new_h = mmcv.rescale_size((width, height), scale)
        if min(new_w, new_h) < 1:
            raise InvalidInputError(
                f'image {name} ({width} x {height} pixels) is too elongated for the test '
                f'pipeline: its Resize to {scale} keeping the aspect ratio would make a side 0 '
                'pixels; crop or pad it to a less elongated shape.')
        height, width = new_h, new_w


def inference_config(config: str,
                     cfg_options: Optional[dict] = None,
                     random_weights: bool = False,
                     tasks: Sequence[str] = ('panoptic', 'semantic', 'instance'),
                     semantic_void_label: Optional[int] = None) -> Config:
    """A MaskCLIP config as the demos run it.

    Args:
        config (str): the config file.
        cfg_options (dict, optional): overrides (``--cfg-options``).
        random_weights (bool): drop the pretrained CLIP and proposer weights:
            runs offline, the labels are meaningless.
        tasks (Sequence[str]): the post-processor's outputs to switch on.
        semantic_void_label (int, optional): see ``UniversalPostProcessor``.

    Returns:
        Config: the config.

    Raises:
        MissingInputError: the config file does not exist.
    """
    cfg = load_config(config, cfg_options)
    if random_weights:
        cfg.model.clip.pretrained = None
        if 'checkpoint' in cfg.model.proposer:
            cfg.model.proposer.checkpoint = None
    if 'post_processor' not in cfg.model:  # Config.setdefault would hand back a copy
        cfg.model.post_processor = dict(type='UniversalPostProcessor')
    post = cfg.model.post_processor
    post.update({f'{t}_on': t in tasks for t in ('panoptic', 'semantic', 'instance')})
    if semantic_void_label is not None:
        post.update(semantic_void_label=semantic_void_label)
    return cfg
