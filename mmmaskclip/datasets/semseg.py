# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Semantic-segmentation benchmarks of paper Table 2 as mmdet datasets.

Adds ADE20K-847, PASCAL Context 59 and PASCAL Context 459 (mmdet ships A-150
only). Each states the ``ignore_index`` of its label maps in its metainfo;
what uint16 label maps need at each pipeline step is in ``docs/internals.md``.
"""
from typing import List, Optional

from mmdet.datasets import BaseSegDataset
from mmdet.registry import DATASETS

from .semseg_classes import (ADE20K_847_CLASSES, PASCAL_CONTEXT_59_CLASSES,
                             PASCAL_CONTEXT_459_CLASSES)

#: ignore value of the uint16 label maps (A-847, PC-459)
UINT16_IGNORE_INDEX = 65535
#: ignore value of the uint8 label maps (PC-59 after ``reduce_zero_label``)
UINT8_IGNORE_INDEX = 255


class VocabularySegDataset(BaseSegDataset):
    """``BaseSegDataset`` whose samples can carry the vocabulary.

    Args:
        return_classes (bool): Put the class names into each sample's
            ``text`` (as mmdet's ``ADE20KSegDataset``). Defaults to False.
        **kwargs: ``BaseSegDataset`` arguments (``ann_file`` is a split
            file of image stems; without it the image folder is listed).
    """

    METAINFO: dict = dict()

    def __init__(self, return_classes: bool = False, **kwargs) -> None:
        self.return_classes = return_classes
        super().__init__(**kwargs)

    @property
    def ignore_index(self) -> int:
        """int: The label value that the metric must ignore."""
        return self._metainfo['ignore_index']

    def load_data_list(self) -> List[dict]:
        """Load the image / label-map pairs, with ``text`` if asked.

        Returns:
            list[dict]: ``img_path``, ``seg_map_path``, ``label_map`` and,
            with ``return_classes``, ``text`` of every sample.
        """
        data_list = super().load_data_list()
        if self.return_classes:
            text = list(self._metainfo['classes'])
            for data_info in data_list:
                data_info['text'] = text
        return data_list


@DATASETS.register_module()
class ADE20K847SegDataset(VocabularySegDataset):
    """ADE20K-full, 847 classes (A-847 of MaskCLIP's Table 2).

    Label maps are uint16 PNGs with the class index 0..846 (order of
    ``ADE20K_847_CLASSES``) and 65535 for unlabeled pixels, as written by
    ``tools/dataset_converters/ade20k_847.py``::

        data/ade20k_full/
        ├── images/{training,validation}/ADE_*.jpg
        └── annotations/{training,validation}/ADE_*.png   (uint16)

    Maps prepared by Mask2Former's script (16-bit ``.tif``, same values)
    load with ``seg_map_suffix='.tif'``.

    Pipeline and metric::

        dict(type='LoadAnnotations', with_bbox=False, with_label=False,
             with_seg=True, reduce_zero_label=False, ignore_index=65535)
        dict(type='PackDetInputs', meta_keys=(..., 'text'))
        DetDataPreprocessor(pad_seg=True, seg_pad_value=65535, ...)
        SemSegMetric()  # pred_sem_seg must carry ignore_index=65535

    Args:
        img_suffix (str): Defaults to '.jpg'.
        seg_map_suffix (str): Defaults to '.png'.
        data_prefix (dict): Defaults to the validation split.
        **kwargs: See :class:`VocabularySegDataset`.
    """

    METAINFO = dict(
        classes=ADE20K_847_CLASSES, ignore_index=UINT16_IGNORE_INDEX, reduce_zero_label=False)

    def __init__(self,
                 img_suffix: str = '.jpg',
                 seg_map_suffix: str = '.png',
                 data_prefix: Optional[dict] = None,
                 **kwargs) -> None:
        if data_prefix is None:
            data_prefix = dict(img_path='images/validation', seg_map_path='annotations/validation')
        super().__init__(
            img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, data_prefix=data_prefix, **kwargs)


@DATASETS.register_module()
class PascalContext59SegDataset(VocabularySegDataset):
    """PASCAL Context, 59 classes (PC-59), mmseg's layout and labels.

    Label maps are uint8 PNGs with 0 = background (all pixels outside the
    59 classes) and 1..59 the classes of ``PASCAL_CONTEXT_59_CLASSES``, as
    written by mmseg's converter or ``tools/dataset_converters/
    pascal_context.py``; load them with ``reduce_zero_label=True`` so that
    the background becomes 255 (ignored) and the classes 0..58::

        data/VOCdevkit/VOC2010/
        ├── JPEGImages/*.jpg
        ├── SegmentationClassContext/*.png            (uint8)
        └── ImageSets/SegmentationContext/{train,val}.txt

    Pipeline and metric::

        dict(type='LoadAnnotations', with_bbox=False, with_label=False,
             with_seg=True, reduce_zero_label=True)
        dict(type='PackDetInputs', meta_keys=(..., 'text'))
        DetDataPreprocessor(pad_seg=True, seg_pad_value=255, ...)
        SemSegMetric()  # ignore 255, mmdet's default

    Args:
        ann_file (str): Split file, e.g.
            ``'ImageSets/SegmentationContext/val.txt'``.
        img_suffix (str): Defaults to '.jpg'.
        seg_map_suffix (str): Defaults to '.png'.
        data_prefix (dict): Defaults to ``JPEGImages`` and
            ``SegmentationClassContext``.
        **kwargs: See :class:`VocabularySegDataset`.
    """

    METAINFO = dict(
        classes=PASCAL_CONTEXT_59_CLASSES, ignore_index=UINT8_IGNORE_INDEX, reduce_zero_label=True)
    SEG_MAP_DIR = 'SegmentationClassContext'

    def __init__(self,
                 ann_file: str = 'ImageSets/SegmentationContext/val.txt',
                 img_suffix: str = '.jpg',
                 seg_map_suffix: str = '.png',
                 data_prefix: Optional[dict] = None,
                 **kwargs) -> None:
        if data_prefix is None:
            data_prefix = dict(img_path='JPEGImages', seg_map_path=self.SEG_MAP_DIR)
        super().__init__(
            ann_file=ann_file,
            img_suffix=img_suffix,
            seg_map_suffix=seg_map_suffix,
            data_prefix=data_prefix,
            **kwargs)


@DATASETS.register_module()
class PascalContext459SegDataset(PascalContext59SegDataset):
    """PASCAL Context, all 459 classes (PC-459).

    Label maps are uint16 PNGs with the class index 0..458 (order of
    ``labels.txt``, ``PASCAL_CONTEXT_459_CLASSES``) and 65535 for unlabeled
    pixels - the official ``LabelMap`` minus one - as written by
    ``tools/dataset_converters/pascal_context.py``::

        data/VOCdevkit/VOC2010/
        ├── JPEGImages/*.jpg
        ├── SegmentationClassContext459/*.png         (uint16)
        └── ImageSets/SegmentationContext/{train,val}.txt

    Pipeline and metric as for :class:`ADE20K847SegDataset` (uint16 maps,
    ignore 65535).

    Args:
        **kwargs: See :class:`PascalContext59SegDataset`; the default
            ``data_prefix`` is ``JPEGImages`` and
            ``SegmentationClassContext459``.
    """

    METAINFO = dict(
        classes=PASCAL_CONTEXT_459_CLASSES,
        ignore_index=UINT16_IGNORE_INDEX,
        reduce_zero_label=False)
    SEG_MAP_DIR = 'SegmentationClassContext459'
