# Copyright (c) mmmaskclip contributors. All rights reserved.
"""LVIS v1 with text prompts for an open-vocabulary model (paper Table 4).

:class:`LVISV1OVDataset` is mmdet's ``LVISV1Dataset`` with an option to give the
text encoder natural phrases (``'teddy bear'`` for ``'teddy_bear'``). Protocol
notes (300 detections per image, federated scoring, the ``np.float`` fix of
:class:`mmmaskclip.evaluation.LVISCompatMetric`) are in ``docs/internals.md``.
"""
import re
from typing import Tuple

from mmdet.datasets import LVISV1Dataset
from mmdet.registry import DATASETS

PROMPT_STYLES = ('raw', 'natural')


def lvis_natural_name(name: str) -> str:
    """A natural phrase for an LVIS class name.

    Underscores become spaces and a parenthesised disambiguation is kept,
    separated by one space: ``'bow_(weapon)'`` -> ``'bow (weapon)'``,
    ``'flip-flop_(sandal)'`` -> ``'flip-flop (sandal)'``,
    ``'monitor_(computer_equipment) computer_monitor'`` -> ``'monitor
    (computer equipment) computer monitor'``. Case, hyphens and apostrophes
    are kept (``'Christmas_tree'`` -> ``'Christmas tree'``). The result holds
    no comma, so the text encoder does not split it into synonyms.

    Args:
        name (str): An LVIS category name.

    Returns:
        str: The phrase.
    """
    text = name.replace('_', ' ')
    text = re.sub(r'\s*\(\s*', ' (', text)
    text = re.sub(r'\s*\)', ')', text)
    return ' '.join(text.split())


@DATASETS.register_module()
class LVISV1OVDataset(LVISV1Dataset):
    """``LVISV1Dataset`` whose ``text`` may hold natural class phrases.

    With ``return_classes=True`` each sample's ``text`` holds one prompt per
    class, in label order: the raw LVIS names (``prompt_style='raw'``, as
    ``LVISV1Dataset``) or :func:`lvis_natural_name` of each
    (``prompt_style='natural'``, the default here). ``metainfo['classes']``
    stays the LVIS names. Unlike ``LVISV1Dataset``, the vocabulary is added
    when a sample is fetched instead of being stored in each of the ~20k
    serialized data infos (1,203 names each).

    Labels are the json's category order (as in ``LVISV1Dataset`` and
    ``LVISMetric``), and ``metainfo['classes']`` must name them in that
    order: the full LVIS v1 jsons match the default metainfo; for another
    json (a subset, a synthetic test json) pass ``metainfo=dict(classes=
    ...)``. A count mismatch raises ``ValueError`` on loading.

    Args:
        prompt_style (str): ``'natural'`` or ``'raw'``.
            Defaults to ``'natural'``.
        *args, **kwargs: ``LVISV1Dataset`` arguments.
    """

    def __init__(self, *args, prompt_style: str = 'natural', **kwargs) -> None:
        if prompt_style not in PROMPT_STYLES:
            raise ValueError(f'prompt_style must be one of {PROMPT_STYLES}, '
                             f'got {prompt_style!r}')
        self.prompt_style = prompt_style
        self._prompts = None
        super().__init__(*args, **kwargs)

    @property
    def prompts(self) -> Tuple[str, ...]:
        """The vocabulary given to the model, one prompt per label."""
        if self._prompts is None:
            classes = tuple(self.metainfo['classes'])
            if self.prompt_style == 'natural':
                classes = tuple(lvis_natural_name(name) for name in classes)
            self._prompts = classes
        return self._prompts

    def load_data_list(self) -> list:
        """``LVISV1Dataset.load_data_list`` plus a vocabulary size check.

        Returns:
            list[dict]: The data infos.
        """
        data_list = super().load_data_list()
        num_classes = len(self.metainfo['classes'])
        if len(self.cat_ids) != num_classes:
            raise ValueError(f"'{self.ann_file}' has {len(self.cat_ids)} categories but "
                             f"metainfo['classes'] names {num_classes}; pass "
                             "metainfo=dict(classes=...) in the json's category order")
        return data_list

    def parse_data_info(self, raw_data_info: dict) -> dict:
        """Parse one image; ``text`` is added later by :meth:`get_data_info`.

        Args:
            raw_data_info (dict): ``raw_img_info`` and ``raw_ann_info``.

        Returns:
            dict: The data info, without ``text``.
        """
        data_info = super().parse_data_info(raw_data_info)
        data_info.pop('text', None)
        return data_info

    def get_data_info(self, idx: int) -> dict:
        """The data info of sample ``idx``, with ``text`` when
        ``return_classes`` is set.

        Args:
            idx (int): Sample index.

        Returns:
            dict: The data info.
        """
        data_info = super().get_data_info(idx)
        if self.return_classes:
            data_info['text'] = self.prompts
        return data_info
