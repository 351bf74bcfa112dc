# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Datasets and data transforms of mmmaskclip, registered into mmdet's
registries on import."""
from .coco_ovd import (COCO_OVD_BASE_CLASSES, COCO_OVD_CLASSES, COCO_OVD_NOVEL_CLASSES,
                       CocoOVDDataset)
from .lvis import LVISV1OVDataset, lvis_natural_name
from .semseg import ADE20K847SegDataset, PascalContext59SegDataset, PascalContext459SegDataset
from .transforms import *  # noqa: F401,F403

__all__ = [
    'COCO_OVD_BASE_CLASSES', 'COCO_OVD_CLASSES', 'COCO_OVD_NOVEL_CLASSES', 'CocoOVDDataset',
    'LVISV1OVDataset', 'lvis_natural_name', 'ADE20K847SegDataset', 'PascalContext59SegDataset',
    'PascalContext459SegDataset'
]
