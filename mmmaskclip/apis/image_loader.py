# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Images into the inferencer's pipeline: files read in one place, arrays in
the inferencer's channel order, bad sizes refused or warned about."""
from typing import Sequence

import numpy as np

from ..utils import read_image
from ..utils.input_checks import warn_unusual_image_size
from .inference_pipeline import check_image_size


class ImageFileLoader:
    """mmdet's ``InferencerLoader`` whose image files are read by
    :func:`~mmmaskclip.utils.read_image` (as ``LoadImageFromFile`` reads
    them, but an unreadable file raises one sentence naming it).

    Arrays in the inferencer's ``channel_order`` ``'rgb'`` are flipped to
    BGR, the order of mmdet's pipeline. Images that the pipeline's resize
    would shrink to nothing are refused too (see
    :func:`~mmmaskclip.apis.inference_pipeline.check_image_size`); tiny or
    very elongated ones are warned about (see
    :func:`~mmmaskclip.utils.input_checks.warn_unusual_image_size`).

    Args:
        loader (callable): mmdet's loader, for arrays and the image meta.
        pipeline (list[dict]): the configs of the pipeline's transforms.
        inferencer (MaskCLIPInferencer): its ``channel_order`` and model.
    """

    def __init__(self, loader, pipeline: Sequence[dict], inferencer) -> None:
        self.loader = loader
        self.pipeline = pipeline
        self.inferencer = inferencer

    def __call__(self, results):
        if isinstance(results, str):
            results = dict(img_path=results)
        path = results.get('img_path') if isinstance(results, dict) else None
        if path is not None and 'img' not in results:
            loaded = self.loader(dict(results, img=read_image(path, channel_order='bgr')))
            loaded['img_path'] = path
        else:
            loaded = self.loader(self._to_bgr(results))
        height, width = loaded['img'].shape[:2]
        check_image_size(self.pipeline, (height, width), path or 'array')
        model = self.inferencer.model
        patch = getattr(getattr(model, 'visual_encoder', None), 'patch_size', None)
        size = getattr(model, 'encoder_input_size', None)
        if patch is not None:
            warn_unusual_image_size(height, width, patch, size,
                                    f'image {path}' if path else 'an image array')
        return loaded

    def _to_bgr(self, results):
        """An array input (or ``dict(img=...)``) with its channels flipped
        when the inferencer's ``channel_order`` is ``'rgb'``."""
        image = results.get('img') if isinstance(results, dict) else results
        if (self.inferencer.channel_order == 'bgr' or not isinstance(image, np.ndarray)
                or image.ndim != 3 or image.shape[-1] != 3):
            return results
        image = np.ascontiguousarray(image[..., ::-1])
        return dict(results, img=image) if isinstance(results, dict) else image
