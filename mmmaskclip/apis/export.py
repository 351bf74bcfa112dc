# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Predictions as files: COCO-style RLE instances, COCO panoptic PNG + segments
info, and the semantic label map, with the vocabulary's names."""
import os.path as osp
from typing import Dict, List, Optional, Sequence

import mmcv
import mmengine
import numpy as np
import pycocotools.mask as mask_utils
from mmdet.structures import DetDataSample

from mmmaskclip.models.post_processing.universal import INSTANCE_OFFSET


def instances_to_list(sample: DetDataSample, classes: Sequence[str]) -> List[dict]:
    """``pred_instances`` as a list of ``{label, name, score, bbox, segmentation}``.

    ``bbox`` is ``[x1, y1, x2, y2]`` and ``segmentation`` a COCO RLE (``counts``
    as a string), decoded by ``pycocotools.mask.decode`` to the ``(H, W)`` mask.
    """
    if 'pred_instances' not in sample:
        return []
    inst = sample.pred_instances
    out = []
    for label, score, box, mask in zip(inst.labels.tolist(), inst.scores.tolist(),
                                       inst.bboxes.tolist(), inst.masks):
        # one mask at a time: a (K, H, W) uint8 copy of a large photo is GBs
        rle = mask_utils.encode(np.asfortranarray(mask.cpu().numpy()[:, :, None], np.uint8))[0]
        out.append(
            dict(
                label=label,
                name=classes[label],
                score=score,
                bbox=box,
                segmentation=dict(size=list(rle['size']), counts=rle['counts'].decode())))
    return out


def panoptic_to_coco(sample: DetDataSample, classes: Sequence[str]) -> tuple:
    """``pred_panoptic_seg`` in COCO panoptic format.

    Returns:
        tuple: the ``(H, W, 3)`` uint8 RGB PNG array (segment id ``R + 256 G +
        256^2 B``, 0 unlabelled) and ``segments_info``: ``{id, category_id,
        name, isthing, area, bbox}`` per segment, ``category_id`` indexing
        ``classes`` and ``bbox`` ``[x, y, w, h]``.
    """
    pan = sample.pred_panoptic_seg.sem_seg[0].cpu().numpy().astype(np.int32)
    void = len(classes)
    pan[pan % INSTANCE_OFFSET == void] = 0
    segments = []
    for seg_id in np.unique(pan):
        if seg_id == 0:
            continue
        mask = pan == seg_id  # one bool map at a time: no per-pixel coordinates
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        label = int(seg_id % INSTANCE_OFFSET)
        segments.append(
            dict(
                id=int(seg_id),
                category_id=label,
                name=classes[label],
                isthing=bool(seg_id >= INSTANCE_OFFSET),
                area=int(mask.sum()),
                bbox=[
                    int(cols[0]),
                    int(rows[0]),
                    int(cols[-1] - cols[0] + 1),
                    int(rows[-1] - rows[0] + 1)
                ]))
    rgb = np.empty((*pan.shape, 3), np.uint8)
    for channel in range(3):
        rgb[..., channel] = pan // 256**channel % 256
    return rgb, segments


def semantic_map(sample: DetDataSample) -> np.ndarray:
    """``pred_sem_seg`` as an ``(H, W)`` uint8 map (uint16 beyond 256 labels)."""
    sem = sample.pred_sem_seg.sem_seg[0].cpu().numpy()
    return sem.astype(np.uint8 if sem.max(initial=0) < 256 else np.uint16)


def export_prediction(sample: DetDataSample,
                      classes: Sequence[str],
                      out_dir: Optional[str] = None,
                      stem: str = 'image') -> Dict:
    """One image's predictions as a json-serialisable dict, and as files.

    With ``out_dir``, writes ``{stem}.json`` (this dict), ``{stem}_panoptic.png``
    (COCO panoptic PNG) and ``{stem}_semantic.png`` (label map) there; the
    dict then names the PNGs instead of holding the arrays.

    Args:
        sample (DetDataSample): predictions of one image.
        classes (Sequence[str]): the vocabulary, things then stuff.
        out_dir (str, optional): where to write the files.
        stem (str): file name stem.

    Returns:
        dict: ``classes``, ``instances`` (see :func:`instances_to_list`),
        ``panoptic`` (``segments_info`` and ``png``) and ``semantic``
        (``png``), each present when predicted.
    """
    result = dict(classes=list(classes), image=sample.metainfo.get('img_path'))
    if 'pred_instances' in sample:
        result['instances'] = instances_to_list(sample, classes)
    pngs = {}
    if 'pred_panoptic_seg' in sample:
        rgb, segments = panoptic_to_coco(sample, classes)
        result['panoptic'] = dict(segments_info=segments)
        pngs['panoptic'] = (rgb[..., ::-1], f'{stem}_panoptic.png')  # mmcv writes BGR
    if 'pred_sem_seg' in sample:
        result['semantic'] = dict()
        pngs['semantic'] = (semantic_map(sample), f'{stem}_semantic.png')
    for key, (array, name) in pngs.items():
        if out_dir is None:
            result[key]['png'] = array
        else:
            mmcv.imwrite(array, osp.join(out_dir, name))
            result[key]['png'] = name
    if out_dir is not None:
        mmengine.dump(result, osp.join(out_dir, f'{stem}.json'), indent=1)
    return result
