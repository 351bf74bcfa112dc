# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Class-name lists (facts) of the semantic-segmentation benchmarks.

The long lists live as data in ``class_lists/`` (one class per line).

* ``ADE20K_847_CATEGORIES``: the 847 classes of ADE20K-full as
  ``(ade_id, name)`` pairs, in the order used by open-vocabulary
  segmentation works (Mask2Former's ``ADE20K_SEM_SEG_FULL_CATEGORIES``, the
  list MaskCLIP's own code registers): position ``i`` is the label ``i`` of
  the converted maps. ``ade_id`` is the object index of the ADE20K 2021
  release (``index_ade20k.pkl``), decoded from its ``*_seg.png`` as
  ``R // 10 * 256 + G``.
* ``PASCAL_CONTEXT_459_CLASSES``: the 459 classes of PASCAL Context in the
  order of its ``labels.txt``; the ``LabelMap`` of the official ``.mat``
  files stores class ``i`` (0-based here) as ``i + 1`` and 0 for unlabeled.
* ``PASCAL_CONTEXT_59_CLASSES``: mmseg's ``PascalContextDataset59`` names,
  the 59 most frequent classes, a subset of the 459 in the same order.
"""
import os.path as osp
from typing import List, Tuple

CLASS_LISTS = osp.join(osp.dirname(osp.abspath(__file__)), 'class_lists')


def read_class_list(name: str) -> List[Tuple[str, ...]]:
    """The lines of ``class_lists/<name>`` split at tabs, ``#`` comment lines left out."""
    with open(osp.join(CLASS_LISTS, name), encoding='utf-8') as f:
        return [
            tuple(line.rstrip('\n').split('\t')) for line in f
            if line.strip() and not line.startswith('#')
        ]


ADE20K_847_CATEGORIES = tuple(
    (int(ade_id), name) for ade_id, name in read_class_list('ade20k_847.tsv'))
ADE20K_847_CLASSES = tuple(name for _, name in ADE20K_847_CATEGORIES)
ADE20K_847_IDS = tuple(ade_id for ade_id, _ in ADE20K_847_CATEGORIES)

PASCAL_CONTEXT_459_CLASSES = tuple(name for name, in read_class_list('pascal_context_459.txt'))

PASCAL_CONTEXT_59_CLASSES = ('aeroplane', 'bag', 'bed', 'bedclothes', 'bench', 'bicycle', 'bird',
                             'boat', 'book', 'bottle', 'building', 'bus', 'cabinet', 'car', 'cat',
                             'ceiling', 'chair', 'cloth', 'computer', 'cow', 'cup', 'curtain',
                             'dog', 'door', 'fence', 'floor', 'flower', 'food', 'grass', 'ground',
                             'horse', 'keyboard', 'light', 'motorbike', 'mountain', 'mouse',
                             'person', 'plate', 'platform', 'pottedplant', 'road', 'rock', 'sheep',
                             'shelves', 'sidewalk', 'sign', 'sky', 'snow', 'sofa', 'table', 'track',
                             'train', 'tree', 'truck', 'tvmonitor', 'wall', 'water', 'window',
                             'wood')

# 1-based ``LabelMap`` value (``labels.txt`` line) of each of the 59 classes.
PASCAL_CONTEXT_59_IDS = tuple(
    PASCAL_CONTEXT_459_CLASSES.index(name) + 1 for name in PASCAL_CONTEXT_59_CLASSES)
