# Copyright (c) mmmaskclip contributors. All rights reserved.
"""The vocabulary of a COCO-style dataset from the mapping its labels come from.

mmdet's COCO-style datasets number labels in the order of the json's
``categories`` (``cat_ids = coco.get_cat_ids(cat_names=classes)``), but with
``return_classes=True`` they put ``metainfo['classes']`` (or
``thing_classes`` / ``stuff_classes``) into every sample's ``text``. When the
two orders differ, label ``i`` and text column ``i`` name different classes,
and an open-vocabulary model silently mislabels everything. The datasets
here build ``text`` (things) and ``stuff_text`` from the json categories in
label order: one source for both.
"""
from typing import List, Optional, Tuple

from mmdet.datasets import ADE20KInstanceDataset, ADE20KPanopticDataset, CocoPanopticDataset
from mmdet.registry import DATASETS


class LabelVocabularyMixin:
    """``text`` / ``stuff_text`` of each sample = the names of labels
    ``0 .. K-1`` as the json's categories define them.

    Things must come first (``isthing`` categories before the others in the
    json, as COCO's and ADE20K's converters write them): MaskCLIP and mmdet's
    panoptic heads read labels ``[0, T)`` as things.

    Args:
        text_map (dict, optional): json category name -> the text given to
            the text encoder instead (e.g. another spelling); labels and
            metrics keep the json's names.
        *args, **kwargs: the dataset's own arguments.
    """

    def __init__(self, *args, text_map: Optional[dict] = None, **kwargs) -> None:
        self.text_map = dict(text_map or {})
        self._label_text: Optional[Tuple[List[str], List[str]]] = None
        super().__init__(*args, **kwargs)

    def label_vocabulary(self) -> Tuple[List[str], List[str]]:
        """``(things, stuff)``: the text of each label, in label order.

        Raises:
            ValueError: if a stuff category precedes a thing category.
        """
        if self._label_text is None:
            cats = self.coco.load_cats(list(self.cat_ids))  # label order
            is_thing = [bool(cat.get('isthing', 1)) for cat in cats]
            num_things = sum(is_thing)
            if any(is_thing[num_things:]):
                raise ValueError(
                    f"'{self.ann_file}' lists stuff categories before thing categories: "
                    'labels [0, T) would not be the things. Reorder its categories, '
                    'things first.')
            names = [self.text_map.get(cat['name'], cat['name']) for cat in cats]
            self._label_text = (names[:num_things], names[num_things:])
        return self._label_text

    def parse_data_info(self, raw_data_info: dict) -> dict:
        """The parent's data info, with ``text`` (and ``stuff_text`` for
        panoptic datasets) in label order."""
        data_info = super().parse_data_info(raw_data_info)
        if self.return_classes:
            things, stuff = self.label_vocabulary()
            data_info['text'] = things
            if 'stuff_text' in data_info or stuff:
                data_info['stuff_text'] = stuff
        return data_info


@DATASETS.register_module()
class CocoPanopticVocabDataset(LabelVocabularyMixin, CocoPanopticDataset):
    """``CocoPanopticDataset`` whose ``text`` / ``stuff_text`` follow its labels."""


@DATASETS.register_module()
class ADE20KPanopticVocabDataset(LabelVocabularyMixin, ADE20KPanopticDataset):
    """``ADE20KPanopticDataset`` whose ``text`` / ``stuff_text`` follow its labels."""


@DATASETS.register_module()
class ADE20KInstanceVocabDataset(LabelVocabularyMixin, ADE20KInstanceDataset):
    """``ADE20KInstanceDataset`` whose ``text`` follows its labels."""
