# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Class-agnostic segment targets for mask proposal networks (paper §3.1).

MaskCLIP's first stage is a class-agnostic mask proposer: a Mask R-CNN or
Mask2Former trained on COCO panoptic "with the class supervision removed",
so that its classifier only tells a segment (thing *or* stuff) from no
object. :class:`ClassAgnosticSegments` turns the annotations that mmdet's
loading transforms produce into such targets.
"""
from typing import List, Optional, Tuple

import numpy as np
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS
from mmdet.structures.bbox import BaseBoxes, HorizontalBoxes
from mmdet.structures.mask import BitmapMasks, PolygonMasks

#: The ignore label of mmdet's semantic maps (``VOID``).
IGNORE_LABEL = 255


@TRANSFORMS.register_module()
class ClassAgnosticSegments(BaseTransform):
    """Make every segment, thing or stuff, one instance of class 0.

    Place it right after ``LoadPanopticAnnotations`` (panoptic datasets such
    as ``CocoPanopticDataset`` or ``ADE20KPanopticDataset``) or after
    ``LoadAnnotations(with_mask=True)`` (instance datasets, which have no
    stuff). Only what the loading transform produced is used: the thing
    instances (``gt_masks``, ``gt_bboxes``, ``gt_ignore_flags``) and, for
    stuff, the segments of ``segments_info`` with ``is_thing=False`` whose
    pixels are read from ``gt_seg_map`` (which holds the label of every
    thing and stuff pixel, 255 for unlabelled ones). Category ids and the
    dataset's class names are never looked at, so any panoptic dataset
    works.

    The stuff segments are appended to the thing instances as
    :obj:`BitmapMasks` with boxes computed from the masks, every label
    becomes 0 ("object") and ``gt_seg_map`` is filled with 255 (or
    dropped): a panoptic head configured with ``num_things_classes=1`` and
    ``num_stuff_classes=0`` (e.g. mmdet's ``Mask2FormerHead``, whose
    ``preprocess_panoptic_gt`` would otherwise turn semantic labels into
    extra targets) sees all segments as instances and no stuff.

    Stuff pixels are those of a non-thing segment's label in ``gt_seg_map``
    that no thing instance covers, so two non-thing segments of the same
    label become one segment (never the case for COCO or ADE20K panoptic,
    which have one segment per stuff class and image).

    ``CocoPanopticDataset`` turns crowd regions (``iscrowd=1``) of thing
    classes into non-thing segments; without ``num_things_classes`` they
    cannot be told from stuff and are appended as segments like stuff. With
    ``num_things_classes`` (the dataset's number of thing classes, whose
    labels are ``0 .. num_things_classes - 1`` in mmdet's panoptic
    datasets), they are appended as ignored instances
    (``gt_ignore_flags=True``): ``PackDetInputs`` moves them to
    ``ignored_instances``, as mmdet does with COCO's crowd instances.

    Required Keys:

    - gt_masks (BitmapMasks | PolygonMasks)
    - gt_bboxes (BaseBoxes[torch.float32] | np.ndarray) (optional)
    - gt_ignore_flags (bool) (optional)
    - gt_seg_map (np.uint8) (needed when there are stuff segments)
    - segments_info (optional; panoptic datasets)

    Modified Keys:

    - gt_masks
    - gt_bboxes
    - gt_bboxes_labels
    - gt_ignore_flags
    - gt_seg_map (filled with 255, or removed with ``drop_seg_map=True``)

    Args:
        with_stuff (bool): Append the stuff segments. False keeps the
            things only (still relabelled to 0). Defaults to True.
        min_area (int): Drop segments (things included) with fewer pixels
            (0 keeps empty masks). Defaults to 1, which drops empty masks
            only.
        num_things_classes (int, optional): Number of thing classes of the
            dataset, only used to recognise crowd regions (see above).
            Defaults to None.
        drop_seg_map (bool): Remove ``gt_seg_map`` instead of filling it
            with 255 (for models that do not use it, e.g. Mask R-CNN; keep
            it for heads and batch augments that pad it, e.g. Mask2Former's
            ``BatchFixedSizePad(pad_seg=True)``). Defaults to False.
        recompute_bbox (bool): Also recompute the boxes of the thing
            instances from their masks (stuff boxes always are).
            Defaults to False.
    """

    def __init__(self,
                 with_stuff: bool = True,
                 min_area: int = 1,
                 num_things_classes: Optional[int] = None,
                 drop_seg_map: bool = False,
                 recompute_bbox: bool = False) -> None:
        if min_area < 0:
            raise ValueError(f'min_area must be >= 0, got {min_area}')
        self.with_stuff = with_stuff
        self.min_area = min_area
        self.num_things_classes = num_things_classes
        self.drop_seg_map = drop_seg_map
        self.recompute_bbox = recompute_bbox

    def _stuff_segments(self, results: dict,
                        things: np.ndarray) -> Tuple[List[np.ndarray], List[bool]]:
        """Masks of the non-thing segments and whether each is a crowd.

        Args:
            results (dict): The result dict.
            things (np.ndarray): ``(H, W)`` bool union of the thing masks.

        Returns:
            tuple[list[np.ndarray], list[bool]]: ``(H, W)`` uint8 masks and
            their ignore flags.
        """
        labels = []
        for info in results.get('segments_info') or []:
            if not info.get('is_thing') and info['category'] not in labels:
                labels.append(info['category'])
        if not labels:
            return [], []
        seg_map = results.get('gt_seg_map')
        if seg_map is None:
            raise KeyError('ClassAgnosticSegments needs `gt_seg_map` for the stuff '
                           'segments: load it (LoadPanopticAnnotations(with_seg=True)) '
                           'or set with_stuff=False')
        masks, crowd = [], []
        for label in labels:
            masks.append(((seg_map == label) & ~things).astype(np.uint8))
            crowd.append(self.num_things_classes is not None and label < self.num_things_classes)
        return masks, crowd

    def transform(self, results: dict) -> dict:
        """Turn the loaded annotations into class-agnostic instances.

        Args:
            results (dict): Result dict of the loading transform.

        Returns:
            dict: The updated result dict.
        """
        if 'gt_masks' not in results:
            raise KeyError('ClassAgnosticSegments needs `gt_masks`: load them '
                           'with with_mask=True')
        masks = results['gt_masks']
        num_things = len(masks)
        ignore = np.asarray(results.get('gt_ignore_flags', np.zeros(num_things, bool)), dtype=bool)
        boxes = results.get('gt_bboxes')
        if boxes is not None and len(boxes) != num_things:
            raise ValueError(f'{len(boxes)} boxes for {num_things} masks')

        stuff, crowd = [], []
        if self.with_stuff:
            covered = np.zeros((masks.height, masks.width), bool)
            if num_things:
                covered = masks.to_ndarray().astype(bool).any(0)
            stuff, crowd = self._stuff_segments(results, covered)
        if stuff:
            if isinstance(masks, PolygonMasks):
                masks = BitmapMasks(masks.to_ndarray(), masks.height, masks.width)
            masks = BitmapMasks(
                np.concatenate([masks.masks, np.stack(stuff)]).astype(np.uint8), masks.height,
                masks.width)
            ignore = np.concatenate([ignore, np.asarray(crowd, bool)])

        if boxes is not None:
            results['gt_bboxes'] = self._boxes(boxes, masks, num_things)
        keep = np.asarray(masks.areas) >= self.min_area
        if not keep.all():
            masks = masks[np.flatnonzero(keep)]
            ignore = ignore[keep]
            if boxes is not None:
                results['gt_bboxes'] = results['gt_bboxes'][keep]
        results['gt_masks'] = masks
        results['gt_ignore_flags'] = ignore
        results['gt_bboxes_labels'] = np.zeros(len(masks), dtype=np.int64)

        if 'gt_seg_map' in results:
            if self.drop_seg_map:
                results.pop('gt_seg_map')
            else:
                results['gt_seg_map'] = np.full_like(results['gt_seg_map'], IGNORE_LABEL)
        return results

    def _boxes(self, thing_boxes, masks, num_things: int):
        """Thing boxes (kept or recomputed) followed by the stuff boxes.

        Args:
            thing_boxes (HorizontalBoxes | np.ndarray): Loaded thing boxes.
            masks (BitmapMasks | PolygonMasks): All masks, things first.
            num_things (int): Number of thing instances.

        Returns:
            HorizontalBoxes | np.ndarray: One box per mask, in the type of
            ``thing_boxes``.
        """
        if isinstance(thing_boxes, BaseBoxes) and not isinstance(thing_boxes, HorizontalBoxes):
            raise TypeError('ClassAgnosticSegments supports horizontal '
                            f'boxes only, got {type(thing_boxes).__name__}')
        if self.recompute_bbox:
            new = HorizontalBoxes.from_instance_masks(masks)
            if isinstance(thing_boxes, BaseBoxes):
                return new.to(thing_boxes.device)
            return new.numpy().astype(thing_boxes.dtype)
        if len(masks) == num_things:
            return thing_boxes
        stuff = HorizontalBoxes.from_instance_masks(masks[np.arange(num_things, len(masks))])
        if isinstance(thing_boxes, BaseBoxes):
            stuff = stuff.to(thing_boxes.device)
            return thing_boxes.cat([thing_boxes, stuff])
        return np.concatenate([thing_boxes.reshape(-1, 4), stuff.numpy().astype(thing_boxes.dtype)])

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(with_stuff={self.with_stuff}, '
                f'min_area={self.min_area}, '
                f'num_things_classes={self.num_things_classes}, '
                f'drop_seg_map={self.drop_seg_map}, '
                f'recompute_bbox={self.recompute_bbox})')
