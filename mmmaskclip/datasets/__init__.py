# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Datasets and data transforms of mmmaskclip, registered into mmdet's
registries on import."""
from .ade20k_150 import (ADE20K_150_AUTHORS_TEXT, ADE20K_150_CATEGORIES, ADE20K_150_CLASSES,
                         label_map, resolve_class_order)
from .coco_ovd import (COCO_OVD_BASE_CLASSES, COCO_OVD_CLASSES, COCO_OVD_NOVEL_CLASSES,
                       CocoOVDDataset)
from .lvis import LVISV1OVDataset, lvis_natural_name
from .semseg import ADE20K847SegDataset, PascalContext59SegDataset, PascalContext459SegDataset
from .transforms import *  # noqa: F401,F403
from .vocabulary import (ADE20KInstanceVocabDataset, ADE20KPanopticVocabDataset,
                         CocoPanopticVocabDataset, LabelVocabularyMixin)

__all__ = [
    'ADE20K_150_AUTHORS_TEXT', 'ADE20K_150_CATEGORIES', 'ADE20K_150_CLASSES', 'label_map',
    'resolve_class_order', 'ADE20KInstanceVocabDataset', 'ADE20KPanopticVocabDataset',
    'CocoPanopticVocabDataset', 'LabelVocabularyMixin', 'COCO_OVD_BASE_CLASSES', 'COCO_OVD_CLASSES',
    'COCO_OVD_NOVEL_CLASSES', 'CocoOVDDataset', 'LVISV1OVDataset', 'lvis_natural_name',
    'ADE20K847SegDataset', 'PascalContext59SegDataset', 'PascalContext459SegDataset'
]
