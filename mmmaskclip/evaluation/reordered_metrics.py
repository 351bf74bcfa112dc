# Copyright (c) mmmaskclip contributors. All rights reserved.
"""mmdet's metrics for predictions labelled in another class order.

One forward of MaskCLIP over a panoptic dataset gives panoptic, instance and
semantic predictions, all labelled by the panoptic dataset's classes. The
instance and semantic benchmarks of the same images number their classes
differently (ADE20K-150: the panoptic json lists things first, the semantic
maps and the instance json follow the standard order). These wrappers map
each predicted label to the benchmark's own class by name, through a
``class_order`` (a list of names, or a known order such as ``'ade20k-150'``,
see :mod:`mmmaskclip.datasets.ade20k_150`), and then score exactly as mmdet's
``SemSegMetric`` and ``CocoMetric`` do.
"""
import copy
from typing import Dict, List, Sequence, Union

import torch
from mmdet.evaluation import CocoMetric, SemSegMetric
from mmdet.registry import METRICS

from ..datasets.ade20k_150 import label_map, resolve_class_order

ClassOrder = Union[str, Sequence[str]]


@METRICS.register_module()
class GTIgnoreSemSegMetric(SemSegMetric):
    """``SemSegMetric`` that ignores the label value the ground truth declares.

    mmdet's ``SemSegMetric`` reads the ignore value from the *prediction*
    (``pred_sem_seg.ignore_index``) and falls back to 255; uint16 benchmarks
    (ADE20K-847, PASCAL Context 459) mark unlabelled pixels 65535, which
    mmdet's ``LoadAnnotations(ignore_index=...)`` records on ``gt_sem_seg``.
    This metric copies that value onto the prediction before scoring, so the
    model need not know about evaluation.

    Args:
        **kwargs: ``SemSegMetric`` arguments.
    """

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Carry ``gt_sem_seg.ignore_index`` to ``pred_sem_seg``, then score."""
        samples = []
        for sample in data_samples:
            ignore = sample.get('gt_sem_seg', {}).get('ignore_index')
            if ignore is not None:
                sample = dict(
                    sample, pred_sem_seg=dict(sample['pred_sem_seg'], ignore_index=ignore))
            samples.append(sample)
        super().process(data_batch, samples)


@METRICS.register_module()
class ReorderedSemSegMetric(GTIgnoreSemSegMetric):
    """``SemSegMetric`` whose ground truth follows ``class_order``.

    Predicted label ``i`` (the dataset's ``classes[i]``) is scored as
    ``class_order.index(classes[i])``; the ground truth (e.g. loaded with
    ``SetSegMapPath`` + ``LoadAnnotations``) is in ``class_order`` already,
    and per-class results are named after it.

    Args:
        class_order (str | Sequence[str]): the benchmark's class names in
            label order, or the name of a known order.
        **kwargs: ``SemSegMetric`` arguments.
    """

    def __init__(self, class_order: ClassOrder, **kwargs) -> None:
        super().__init__(**kwargs)
        self.class_order = resolve_class_order(class_order)
        self._lookup = None

    @property
    def dataset_meta(self) -> dict:
        return self._dataset_meta

    @dataset_meta.setter
    def dataset_meta(self, dataset_meta: dict) -> None:
        """Keep the label map; present the benchmark's classes to the parent."""
        self._lookup = torch.tensor(label_map(dataset_meta['classes'], self.class_order))
        self._dataset_meta = dict(copy.deepcopy(dataset_meta), classes=self.class_order)

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Relabel ``pred_sem_seg`` (ignore values kept), then the parent's."""
        relabelled = []
        for sample in data_samples:
            pred = sample['pred_sem_seg']
            labels = pred['sem_seg']
            known = labels < len(self._lookup)
            lookup = self._lookup.to(labels.device)
            new = torch.where(known, lookup[labels.clamp(max=len(lookup) - 1).long()], labels)
            relabelled.append(dict(sample, pred_sem_seg=dict(pred, sem_seg=new.to(labels.dtype))))
        super().process(data_batch, relabelled)


@METRICS.register_module()
class ReorderedCocoMetric(CocoMetric):
    """``CocoMetric`` against an ``ann_file`` whose category ids are the
    positions of the classes in ``class_order``.

    Predicted label ``i`` (the dataset's ``thing_classes[i]``, or
    ``classes[i]`` without thing classes) becomes category
    ``class_order.index(...)``: e.g. ADE20K-150 panoptic predictions scored
    on mmdet's (and Mask2Former's) ``ade20k_instance_val.json``, whose ids
    are the standard semantic indices. Images are matched by ``img_id``.

    Args:
        class_order (str | Sequence[str]): class names whose positions are
            the ``ann_file``'s category ids, or the name of a known order.
        **kwargs: ``CocoMetric`` arguments (``ann_file`` required).
    """

    def __init__(self, class_order: ClassOrder, **kwargs) -> None:
        if not kwargs.get('ann_file'):
            raise ValueError('ReorderedCocoMetric needs the ann_file of the benchmark.')
        super().__init__(**kwargs)
        self.class_order = resolve_class_order(class_order)

    def compute_metrics(self, results: list) -> Dict[str, float]:
        """Fix the label -> category id map, then the parent's."""
        names: List[str] = list(
            self.dataset_meta.get('thing_classes') or self.dataset_meta['classes'])
        cat_ids = label_map(names, self.class_order)
        missing = sorted(set(cat_ids) - set(self._coco_api.get_cat_ids()))
        if missing:
            raise ValueError(f'{self.__class__.__name__}: category ids {missing[:10]} of '
                             f'{names[:3]}... are not in the ann_file.')
        self.cat_ids = cat_ids
        return super().compute_metrics(results)
