# Copyright (c) mmmaskclip contributors. All rights reserved.
"""The vocabulary of a batch and its ground-truth segments, computed once."""
import re
import warnings
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

from mmdet.models.utils import preprocess_panoptic_gt
from mmdet.structures import SampleList
from mmengine.structures import InstanceData

from ...utils import InputWarning, InvalidInputError


def parse_class_names(text: Union[None, str, Sequence[str]]) -> Tuple[str, ...]:
    """Class names from any of the forms users pass.

    A sequence of names is kept as it is (a comma inside a name joins
    synonyms); a string is mmdet's open-vocabulary form ``'person . car .
    traffic light'`` (names separated by ``' . '``, a trailing ``' .'`` allowed),
    and a string without ``' . '`` is one name. Empty or whitespace-only
    names are refused (``InvalidInputError``, a ``ValueError``).

    Args:
        text (str | Sequence[str] | None): the names; None gives ``()``.

    Returns:
        tuple[str]: the names.
    """
    if text is None:
        return ()
    if isinstance(text, str):
        stripped = text.strip()
        stripped = stripped[:-1].rstrip() if stripped.endswith(' .') else stripped
        # a '.' between blanks separates names ('St. Bernard' keeps its '.')
        names = tuple(part.strip() for part in re.split(r'\s\.(?=\s|$)', stripped))
        names = names if stripped else ()
    elif isinstance(text, Sequence):
        names = tuple(text)
        bad = [n for n in names if not isinstance(n, str)]
        if bad:
            raise TypeError(f'Class names must be strings, got {bad[0]!r} in {text!r}.')
    else:
        raise TypeError('Class names are a list of strings or a string such as '
                        f"'person . car', got {type(text).__name__}: {text!r}.")
    blank = [n for n in names if not n.strip()]
    if blank:
        raise InvalidInputError(f'An empty class name ({blank[0]!r}) in {text!r}: remove it or '
                                'give a name.')
    return names


def name_key(name: str) -> str:
    """What two names share when CLIP embeds them alike: case and runs of
    whitespace ignored (CLIP's tokenizer lowercases and collapses them)."""
    return ' '.join(name.lower().split())


def first_occurrences(names: Sequence[str],
                      what: str = 'class names',
                      warn: bool = True) -> List[int]:
    """Indices of the names to keep when duplicates are dropped.

    The rule of every user-facing entry (``build_vocabulary``, the
    inferencer, ``classify_masks``, the demos): a name equal to an earlier
    one up to case and whitespace (see :func:`name_key`), which CLIP would
    embed identically and which would split that class's probability in
    two, is dropped with an ``InputWarning`` naming it; the first occurrence
    (and its position and role) is kept. Models and datasets keep their
    names as given.

    Args:
        names (Sequence[str]): the names, in order.
        what (str): what they are, for the warning.
        warn (bool): warn about the dropped names. Default True.

    Returns:
        list[int]: the indices kept, increasing.
    """
    seen: Dict[str, str] = {}
    keep, dropped = [], []
    for index, name in enumerate(names):
        key = name_key(name)
        if key in seen:
            dropped.append(repr(name) if name == seen[key] else f'{name!r} (as {seen[key]!r})')
        else:
            seen[key] = name
            keep.append(index)
    if dropped and warn:
        shown = ', '.join(dropped[:10])
        more = f' and {len(dropped) - 10} more' if len(dropped) > 10 else ''
        warnings.warn(
            f'Duplicate {what} dropped (the first occurrence is kept): {shown}{more}.',
            InputWarning,
            stacklevel=3)
    return keep


@dataclass(frozen=True)
class Vocabulary:
    """The ``C`` class names of a batch, things first, and the void class.

    Attributes:
        names (tuple[str]): things, then stuff.
        num_things (int): the first ``num_things`` names are things.
        void (str, optional): a void class (the authors' ``'other'``) whose
            text column follows the names; None for no void column.
    """
    names: Tuple[str, ...]
    num_things: int
    void: Optional[str] = None

    def __post_init__(self) -> None:
        if not self.names:
            raise ValueError('The vocabulary is empty: give at least one class name.')
        if not 0 <= self.num_things <= len(self.names):
            raise ValueError(f'num_things={self.num_things} does not fit a vocabulary of '
                             f'{len(self.names)} classes.')

    @property
    def num_classes(self) -> int:
        """``C``, the void class excluded."""
        return len(self.names)

    @property
    def text(self) -> List[str]:
        """The text encoder's input: the names, then the void class if any."""
        return list(self.names) + ([self.void] if self.void else [])

    @classmethod
    def of_batch(cls,
                 batch_data_samples: SampleList,
                 class_names: Optional[Sequence[str]] = None,
                 num_things: Optional[int] = None,
                 void: Optional[str] = None) -> 'Vocabulary':
        """A fixed vocabulary (``class_names``, its first ``num_things`` things,
        all of them by default), else the samples' ``text`` (things) and
        ``stuff_text`` (stuff), which mmdet datasets add with
        ``return_classes=True``."""
        if class_names:
            names = tuple(class_names)
            return cls(names, len(names) if num_things is None else num_things, void)
        vocabularies = {(parse_class_names(sample.metainfo.get('text')),
                         parse_class_names(sample.metainfo.get('stuff_text')))
                        for sample in batch_data_samples}
        if len(vocabularies) > 1:
            raise ValueError('The images of one batch have different vocabularies: give one '
                             'vocabulary to all, or infer them one at a time (batch_size=1).')
        things, stuff = vocabularies.pop() if vocabularies else ((), ())
        if not things and not stuff:
            raise ValueError(
                'MaskCLIP has no vocabulary: set model.class_names, or build the dataset '
                "with return_classes=True and add 'text' (and 'stuff_text' for panoptic "
                "datasets) to PackDetInputs' meta_keys.")
        return cls(things + stuff, len(things), void)


def gt_segments(batch_data_samples: SampleList, vocabulary: Vocabulary) -> List[InstanceData]:
    """Ground-truth things and stuff of each image as ``labels`` ``(K,)`` and
    bool ``masks`` ``(K, h, w)`` (mmdet's panoptic preprocessing; a semantic
    sample gives one segment per class present), at the size the samples
    hold them (the padded batch in training).

    Used by the training loss, ``GTMaskProposer`` and the proposal dump tool.
    """
    segments = []
    num_things = vocabulary.num_things
    num_stuff = vocabulary.num_classes - num_things
    for sample in batch_data_samples:
        # long: uint16 maps (more than 255 classes) support few torch ops
        sem_seg = sample.gt_sem_seg.sem_seg.long() if 'gt_sem_seg' in sample else None
        if 'masks' not in sample.get('gt_instances', {}):  # semantic: a segment a class
            if sem_seg is None:
                raise ValueError('Ground-truth segments need gt_instances.masks or '
                                 'gt_sem_seg: load annotations in the pipeline.')
            labels = sem_seg.unique()
            labels = labels[labels < vocabulary.num_classes]
            masks = sem_seg[0][None] == labels[:, None, None]
            segments.append(InstanceData(labels=labels.long(), masks=masks))
            continue
        labels, masks = preprocess_panoptic_gt(sample.gt_instances.labels,
                                               sample.gt_instances.masks, sem_seg, num_things,
                                               num_stuff)
        segments.append(InstanceData(labels=labels, masks=masks.bool()))
    return segments
