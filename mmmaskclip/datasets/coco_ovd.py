# Copyright (c) mmmaskclip contributors. All rights reserved.
"""The COCO 48/17 open-vocabulary split for instance segmentation (paper Table 5).

:class:`CocoOVDDataset` builds XPM's constrained novel / base and generalized
validation sets from the standard ``instances_val2017.json``, keeping only the
images with an annotation of the split. The protocol is in
``docs/internals.md`` (COCO 48/17).
"""
import copy
from typing import Dict, List, Optional, Sequence, Tuple

import mmengine
from mmdet.datasets import CocoDataset
from mmdet.registry import DATASETS
from mmengine.fileio import get_local_path

#: The 48 base (seen) classes of the OVR-CNN split, in COCO category order.
COCO_OVD_BASE_CLASSES: Tuple[str,
                             ...] = ('person', 'bicycle', 'car', 'motorcycle', 'train', 'truck',
                                     'boat', 'bench', 'bird', 'horse', 'sheep', 'bear', 'zebra',
                                     'giraffe', 'backpack', 'handbag', 'suitcase', 'frisbee',
                                     'skis', 'kite', 'surfboard', 'bottle', 'fork', 'spoon', 'bowl',
                                     'banana', 'apple', 'sandwich', 'orange', 'broccoli', 'carrot',
                                     'pizza', 'donut', 'chair', 'bed', 'toilet', 'tv', 'laptop',
                                     'mouse', 'remote', 'microwave', 'oven', 'toaster',
                                     'refrigerator', 'book', 'clock', 'vase', 'toothbrush')

#: The 17 novel (unseen, target) classes, in COCO category order.
COCO_OVD_NOVEL_CLASSES: Tuple[str, ...] = ('airplane', 'bus', 'cat', 'dog', 'cow', 'elephant',
                                           'umbrella', 'tie', 'snowboard', 'skateboard', 'cup',
                                           'knife', 'cake', 'couch', 'keyboard', 'sink', 'scissors')

_COCO80: Tuple[str, ...] = tuple(CocoDataset.METAINFO['classes'])
_COCO80_PALETTE: List[tuple] = list(CocoDataset.METAINFO['palette'])

#: All 65 classes of the split, in COCO category order (base and novel mixed).
COCO_OVD_CLASSES: Tuple[str, ...] = tuple(
    name for name in _COCO80 if name in COCO_OVD_BASE_CLASSES or name in COCO_OVD_NOVEL_CLASSES)

COCO_OVD_SPLITS: Dict[str, Tuple[str, ...]] = dict(
    base=COCO_OVD_BASE_CLASSES, novel=COCO_OVD_NOVEL_CLASSES, all=COCO_OVD_CLASSES)

#: The splits each setting allows; the first one is the default.
COCO_OVD_SETTINGS: Dict[str, Tuple[str, ...]] = dict(
    generalized=('all', ), constrained=('novel', 'base'))


def coco_ovd_vocabulary(setting: str = 'generalized',
                        split: Optional[str] = None) -> Tuple[str, ...]:
    """The vocabulary (also the scored classes) of a setting and split.

    Args:
        setting (str): ``'generalized'`` (65 classes scored together) or
            ``'constrained'`` (one split alone, with its own vocabulary).
            Defaults to ``'generalized'``.
        split (str, optional): ``'all'`` for the generalized setting,
            ``'novel'`` or ``'base'`` for the constrained one. Defaults to
            None: ``'all'`` / ``'novel'``.

    Returns:
        tuple[str]: Class names in COCO category order.
    """
    if setting not in COCO_OVD_SETTINGS:
        raise ValueError(f'setting must be one of {tuple(COCO_OVD_SETTINGS)}, '
                         f'got {setting!r}')
    allowed = COCO_OVD_SETTINGS[setting]
    split = allowed[0] if split is None else split
    if split not in allowed:
        raise ValueError(f'the {setting} setting takes split in {allowed}, '
                         f'got {split!r}')
    return COCO_OVD_SPLITS[split]


def filter_coco_split(coco: dict, class_names: Sequence[str], progress: bool = False) -> dict:
    """Keep the categories ``class_names`` of a COCO instances json.

    The OVR-CNN / XPM rule: the categories named in ``class_names`` (json
    order), all their annotations (crowd ones included) and the images that
    hold at least one of them. Other top-level keys are kept unchanged.

    Args:
        coco (dict): A COCO instances json, as loaded (not modified).
        class_names (Sequence[str]): Names of the categories to keep; all
            must exist in ``coco['categories']``.
        progress (bool): Show a progress bar over the annotations.
            Defaults to False.

    Returns:
        dict: The filtered json.
    """
    names = set(class_names)
    categories = [cat for cat in coco['categories'] if cat['name'] in names]
    missing = names - {cat['name'] for cat in categories}
    if missing:
        raise ValueError(f'categories missing from the json: {sorted(missing)}')
    cat_ids = {cat['id'] for cat in categories}
    anns = coco['annotations']
    if progress:
        anns = mmengine.track_iter_progress(anns)
    annotations = [ann for ann in anns if ann['category_id'] in cat_ids]
    img_ids = {ann['image_id'] for ann in annotations}
    out = {k: v for k, v in coco.items() if k not in ('categories', 'annotations', 'images')}
    out['images'] = [img for img in coco['images'] if img['id'] in img_ids]
    out['annotations'] = annotations
    out['categories'] = categories
    return out


@DATASETS.register_module()
class CocoOVDDataset(CocoDataset):
    """COCO instance segmentation on the 48/17 open-vocabulary split.

    ``metainfo['classes']`` (and so each sample's ``text`` with
    ``return_classes=True``) is the vocabulary of the setting: 65 classes
    for ``generalized``, the 17 novel (``split='novel'``) or the 48 base
    (``split='base'``) ones for ``constrained``, in COCO category order.
    ``metainfo`` also carries the full ``base_classes`` (48) and
    ``novel_classes`` (17) that ``OVCocoMetric`` reads to split the AP; in a
    constrained setting the other split has no scored class and the metric
    reports -1 for it. Keep the full lists: ``OVCocoMetric`` asks the COCO API
    for the ids of these names, and an empty list would mean *all* ids.

    The annotation file may be the standard ``instances_val2017.json``, a
    json of mmdet's ``coco2ovd.py`` or one of
    ``tools/dataset_converters/coco_ovd_constrained.py``: categories outside
    the vocabulary are dropped (as ``CocoDataset`` does) and, with
    ``filter_split_images=True``, so are the images without any annotation
    (crowd included) of a vocabulary class, in test mode too, which is the
    image set of the OVR-CNN / XPM jsons (see the module docstring). Give
    the metric either the same json or the standard one (the images dropped
    here hold no ground truth of the scored classes, so the AP is the same).

    Args:
        setting (str): ``'generalized'`` or ``'constrained'``.
            Defaults to ``'generalized'``.
        split (str, optional): ``'all'`` (generalized) or ``'novel'`` /
            ``'base'`` (constrained). Defaults to None: ``'all'`` for
            generalized, ``'novel'`` for constrained.
        filter_split_images (bool): Drop the images without an annotation
            of a vocabulary class. Defaults to True.
        *args, **kwargs: ``CocoDataset`` arguments. ``metainfo`` may add
            keys but not change ``classes``, ``base_classes`` or
            ``novel_classes``.

    Raises:
        ValueError: Bad setting/split, a ``metainfo`` that changes the
            vocabulary, or (on loading) a json that lacks a vocabulary class,
            repeats one, or lists them out of COCO order (labels follow the
            json order in mmdet's datasets and metrics).
    """

    METAINFO = dict(
        classes=COCO_OVD_CLASSES,
        base_classes=COCO_OVD_BASE_CLASSES,
        novel_classes=COCO_OVD_NOVEL_CLASSES,
        palette=[_COCO80_PALETTE[_COCO80.index(c)] for c in COCO_OVD_CLASSES])

    def __init__(self,
                 *args,
                 setting: str = 'generalized',
                 split: Optional[str] = None,
                 filter_split_images: bool = True,
                 **kwargs) -> None:
        classes = coco_ovd_vocabulary(setting, split)
        self.setting = setting
        self.split = COCO_OVD_SETTINGS[setting][0] if split is None else split
        self.filter_split_images = filter_split_images
        fixed = dict(
            classes=classes,
            base_classes=COCO_OVD_BASE_CLASSES,
            novel_classes=COCO_OVD_NOVEL_CLASSES,
            palette=[_COCO80_PALETTE[_COCO80.index(c)] for c in classes])
        metainfo = dict(kwargs.pop('metainfo', None) or {})
        for key in ('classes', 'base_classes', 'novel_classes'):
            if key in metainfo and tuple(metainfo[key]) != fixed[key]:
                raise ValueError(f"metainfo['{key}'] of CocoOVDDataset is set by setting="
                                 f'{setting!r}, split={self.split!r}; do not override it')
        metainfo.update({
            k: v
            for k, v in fixed.items() if k != 'palette' or 'palette' not in metainfo
        })
        super().__init__(*args, metainfo=metainfo, **kwargs)

    def _vocabulary_cat_ids(self) -> List[int]:
        """Category ids of the vocabulary, checked against the json.

        Returns:
            list[int]: One id per class of ``metainfo['classes']``, in order.
        """
        classes = tuple(self.metainfo['classes'])
        wanted = set(classes)
        kept = [cat for cat in self.coco.dataset['categories'] if cat['name'] in wanted]
        names = [cat['name'] for cat in kept]
        missing = [name for name in classes if name not in names]
        if missing:
            raise ValueError(f"'{self.ann_file}' lacks the categories "
                             f'{missing} of the {self.setting} setting')
        if tuple(names) != classes:
            raise ValueError(f"the categories of '{self.ann_file}' repeat or reorder the "
                             'vocabulary; mmdet numbers labels in json order, so this json '
                             f'would label them as {names}')
        return [cat['id'] for cat in kept]

    def load_data_list(self) -> List[dict]:
        """Load the images and instances of the vocabulary classes.

        Returns:
            list[dict]: One data info per kept image (see
            ``CocoDataset.parse_data_info``).
        """
        with get_local_path(self.ann_file, backend_args=self.backend_args) as local_path:
            self.coco = self.COCOAPI(local_path)
        self.cat_ids = self._vocabulary_cat_ids()
        self.cat2label = {cat_id: i for i, cat_id in enumerate(self.cat_ids)}
        self.cat_img_map = copy.deepcopy(self.coco.cat_img_map)
        split_img_ids = set()
        for cat_id in self.cat_ids:
            split_img_ids.update(self.cat_img_map[cat_id])

        data_list, ann_ids = [], []
        for img_id in self.coco.get_img_ids():
            if self.filter_split_images and img_id not in split_img_ids:
                continue
            img_info = dict(self.coco.load_imgs([img_id])[0], img_id=img_id)
            img_ann_ids = self.coco.get_ann_ids(img_ids=[img_id])
            ann_ids.extend(img_ann_ids)
            data_list.append(
                self.parse_data_info(
                    dict(raw_img_info=img_info, raw_ann_info=self.coco.load_anns(img_ann_ids))))
        if self.ANN_ID_UNIQUE and len(set(ann_ids)) != len(ann_ids):
            raise ValueError(f"annotation ids in '{self.ann_file}' are not unique")
        del self.coco
        return data_list


def coco_ovd_json_name(stem: str, split: str) -> str:
    """File name of a split's json: ``{stem}_{split}_{number of classes}``.

    Args:
        stem (str): Name of the source json without ``.json``, e.g.
            ``'instances_val2017'``.
        split (str): ``'novel'``, ``'base'`` or ``'all'``.

    Returns:
        str: e.g. ``'instances_val2017_novel_17.json'``.
    """
    return f'{stem}_{split}_{len(COCO_OVD_SPLITS[split])}.json'
