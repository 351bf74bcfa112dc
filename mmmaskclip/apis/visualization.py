# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Pictures of labelled masks, drawn by mmdet's ``DetLocalVisualizer``."""
from typing import Optional

import numpy as np
import torch
from mmdet.structures import DetDataSample
from mmdet.visualization import DetLocalVisualizer
from mmengine.structures import InstanceData

from .mask_classification import MaskClassification


def draw_mask_classification(image: np.ndarray,
                             masks: np.ndarray,
                             result: MaskClassification,
                             out_file: Optional[str] = None,
                             score_thr: float = 0.0) -> np.ndarray:
    """Draw each mask in its class colour with ``name: score`` at its centre.

    Args:
        image (np.ndarray): RGB uint8 ``(H, W, 3)``.
        masks (np.ndarray): bool ``(M, H', W')``; resized to the image.
        result (MaskClassification): from :func:`classify_masks`.
        out_file (str, optional): where to write the picture.
        score_thr (float): masks scoring below are not drawn.

    Returns:
        np.ndarray: the drawn RGB image.
    """
    height, width = image.shape[:2]
    masks_t = torch.from_numpy(np.ascontiguousarray(masks)).float()
    if masks_t.shape[-2:] != (height, width) and len(masks_t):
        masks_t = torch.nn.functional.interpolate(
            masks_t[None], size=(height, width), mode='nearest')[0]
    keep = (masks_t.flatten(1).sum(1) > 0).numpy() & (result.scores >= score_thr)
    instances = InstanceData(
        masks=masks_t[torch.from_numpy(keep)].bool().numpy(),
        labels=torch.from_numpy(result.labels[keep]).long(),
        scores=torch.from_numpy(result.scores[keep]).float())
    sample = DetDataSample(pred_instances=instances)
    visualizer = DetLocalVisualizer(name=f'mask_classification_{id(result)}', alpha=0.5)
    visualizer.dataset_meta = dict(classes=tuple(result.class_names))
    visualizer.add_datasample(
        'masks', image, sample, draw_gt=False, pred_score_thr=score_thr, out_file=out_file)
    return visualizer.get_image()
