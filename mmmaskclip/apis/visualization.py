# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Pictures of labelled masks, drawn by mmdet's ``DetLocalVisualizer`` in
mmmaskclip's style (see :class:`~mmmaskclip.apis.drawing.LabelledVisualizer`)."""
from typing import Optional

import mmcv
import numpy as np
import torch
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData

from .drawing import LabelledVisualizer
from .mask_classification import MaskClassification


def nothing_drawn_message(masks: np.ndarray, result: MaskClassification,
                          score_thr: float) -> Optional[str]:
    """Why :func:`draw_mask_classification` draws no mask, or None where it
    draws some.

    Args:
        masks (np.ndarray): the masks, ``(M, H, W)``.
        result (MaskClassification): their classification.
        score_thr (float): masks scoring below are not drawn.

    Returns:
        str | None: e.g. ``'nothing above the score threshold 0.5'``.
    """
    if not len(masks):
        return 'no mask to draw'
    covered = np.asarray(masks).reshape(len(masks), -1).any(1)
    scored = np.asarray(result.scores) >= score_thr
    if (covered & scored).any():
        return None
    if scored.any():
        return 'nothing to draw: every mask at or above the score threshold is empty'
    return f'nothing above the score threshold {score_thr:g}'


def draw_mask_classification(image: np.ndarray,
                             masks: np.ndarray,
                             result: MaskClassification,
                             out_file: Optional[str] = None,
                             score_thr: float = 0.0,
                             font_path: Optional[str] = None) -> np.ndarray:
    """Draw each mask in its class colour with ``name: 74.3%`` at its centre
    (the score in percent, as :func:`~mmmaskclip.apis.drawing.score_text`
    prints it); a picture with no mask to draw says so in its corner (see
    :func:`nothing_drawn_message`).

    Args:
        image (np.ndarray): RGB uint8 ``(H, W, 3)``.
        masks (np.ndarray): bool ``(M, H', W')``; resized to the image.
        result (MaskClassification): from :func:`classify_masks`.
        out_file (str, optional): where to write the picture.
        score_thr (float): masks scoring below are not drawn.
        font_path (str, optional): a font file for the names, e.g. a CJK
            font for Chinese names (matplotlib's default font has no CJK
            glyphs: they would draw as empty boxes).

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
    visualizer = LabelledVisualizer(
        name=f'mask_classification_{id(result)}', alpha=0.5, font_path=font_path)
    visualizer.dataset_meta = dict(classes=tuple(result.class_names))
    # mmdet keeps scores above its threshold: every kept mask (>= score_thr) is drawn
    visualizer.add_datasample('masks', image, sample, draw_gt=False, pred_score_thr=-1.0)
    drawing = visualizer.get_image()
    message = nothing_drawn_message(masks_t.numpy(), result, score_thr)
    if message is not None:
        drawing = visualizer.draw_message(drawing, message)
    if out_file is not None:
        mmcv.imwrite(drawing[..., ::-1], out_file)
    return drawing
