# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Vocabularies for inference: dataset presets, files of names and free names."""
import os.path as osp
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Sequence, Tuple, Union

from mmmaskclip.models.utils import first_occurrences, parse_class_names
from mmmaskclip.utils import InvalidInputError, check_file, read_json


@dataclass(frozen=True)
class ClassVocabulary:
    """Thing and stuff names of one vocabulary, in order.

    Attributes:
        things (tuple[str]): classes with instances (instance and panoptic
            things).
        stuff (tuple[str]): amorphous classes (one panoptic segment per class,
            never an instance).
    """
    things: Tuple[str, ...] = ()
    stuff: Tuple[str, ...] = ()

    @property
    def names(self) -> Tuple[str, ...]:
        """Things then stuff: the label order of the predictions."""
        return self.things + self.stuff

    def __add__(self, other: 'ClassVocabulary') -> 'ClassVocabulary':
        """Both vocabularies; a name already present (up to case and
        whitespace) keeps its first role."""
        return combine_vocabularies([self, other], warn=False)


def combine_vocabularies(parts: Iterable[ClassVocabulary], warn: bool = True) -> ClassVocabulary:
    """One vocabulary of ``parts`` in order, without duplicates: a name
    equal to an earlier one up to case and whitespace is dropped (with an
    ``InputWarning`` naming it when ``warn``), the first keeps its role (see
    :func:`~mmmaskclip.models.utils.first_occurrences`)."""
    names, is_thing = [], []
    for part in parts:
        names += part.names
        is_thing += [True] * len(part.things) + [False] * len(part.stuff)
    keep = first_occurrences(names, warn=warn)
    return ClassVocabulary(
        tuple(names[i] for i in keep if is_thing[i]),
        tuple(names[i] for i in keep if not is_thing[i]))


def _coco() -> ClassVocabulary:
    from mmdet.datasets import CocoPanopticDataset
    meta = CocoPanopticDataset.METAINFO
    return ClassVocabulary(tuple(meta['thing_classes']), tuple(meta['stuff_classes']))


def _coco_stuff() -> ClassVocabulary:
    from mmdet.datasets import CocoDataset
    from mmseg.datasets import COCOStuffDataset
    things = set(CocoDataset.METAINFO['classes'])
    names = COCOStuffDataset.METAINFO['classes']
    return ClassVocabulary(
        tuple(n for n in names if n in things), tuple(n for n in names if n not in things))


def _ade20k() -> ClassVocabulary:
    from mmmaskclip.datasets import ADE20K_150_CATEGORIES
    return ClassVocabulary(
        tuple(n for n, thing in ADE20K_150_CATEGORIES if thing),
        tuple(n for n, thing in ADE20K_150_CATEGORIES if not thing))


def _all_stuff(attr: str) -> Callable[[], ClassVocabulary]:
    """A semantic benchmark without thing marks: every class is stuff."""

    def build() -> ClassVocabulary:
        from mmmaskclip.datasets import semseg_classes
        return ClassVocabulary((), tuple(getattr(semseg_classes, attr)))

    return build


def _lvis() -> ClassVocabulary:
    from mmdet.datasets import LVISV1Dataset

    from mmmaskclip.datasets.lvis import lvis_natural_name
    return ClassVocabulary(tuple(lvis_natural_name(n) for n in LVISV1Dataset.METAINFO['classes']))


#: Preset name -> builder. Datasets without thing marks (ADE20K-full, PASCAL
#: Context) are all stuff: semantic and panoptic (a segment per class), no
#: instances; mark things in a vocabulary file to get instances.
PRESETS: Dict[str, Callable[[], ClassVocabulary]] = {
    'coco': _coco,  # COCO panoptic: 80 things, 53 stuff
    'coco-stuff': _coco_stuff,  # COCO-Stuff: 80 things, 91 stuff
    'ade20k': _ade20k,  # ADE20K-150: 100 things, 50 stuff
    'ade20k-full': _all_stuff('ADE20K_847_CLASSES'),  # 847 classes
    'pascal-context-59': _all_stuff('PASCAL_CONTEXT_59_CLASSES'),
    'pascal-context-459': _all_stuff('PASCAL_CONTEXT_459_CLASSES'),
    'lvis': _lvis,  # LVIS v1: 1203 things, as natural phrases
}


def read_vocabulary_file(path: str) -> ClassVocabulary:
    """A vocabulary from a file.

    * ``.json``: a list of names (things), or ``{"things": [...], "stuff":
      [...]}``;
    * any other file: one name a line, optionally ``name: thing`` or
      ``name: stuff`` (thing by default); blank lines and ``#`` comments are
      skipped. A comma inside a name joins synonyms (``'sofa, couch'``).

    Args:
        path (str): the file.

    Returns:
        ClassVocabulary: its names.

    Raises:
        InvalidInputError: (``MissingInputError`` for a missing file) naming
            the file: not JSON, another structure, a bad role, an empty name.
    """
    if path.endswith('.json'):
        data = read_json(path, 'vocabulary file')
        if isinstance(data, list):
            return ClassVocabulary(parse_class_names(data))
        if isinstance(data, dict) and set(data) <= {'things', 'stuff'}:
            return ClassVocabulary(
                parse_class_names(data.get('things', [])), parse_class_names(data.get('stuff', [])))
        raise InvalidInputError(f'{path}: expected a list of names or {{"things": [...], '
                                f'"stuff": [...]}}, got {type(data).__name__}.')
    with open(check_file(path, 'vocabulary file'), encoding='utf-8') as f:
        things, stuff = [], []
        for number, line in enumerate(f, 1):
            line = line.split('#', 1)[0].strip()
            if not line:
                continue
            name, _, role = line.rpartition(':') if ':' in line else (line, '', 'thing')
            role = role.strip().lower()
            if role not in ('thing', 'stuff'):
                raise InvalidInputError(f"{path}:{number}: the role after ':' must be 'thing' or "
                                        f"'stuff', got {role!r}.")
            (things if role == 'thing' else stuff).append(name.strip())
    return ClassVocabulary(parse_class_names(things), parse_class_names(stuff))


def build_vocabulary(vocab: Union[None, str, Sequence[str]] = None,
                     texts: Union[None, str, Sequence[str]] = None,
                     stuff_texts: Union[None, str, Sequence[str]] = None) -> ClassVocabulary:
    """Combine presets, files and free names into one vocabulary.

    Args:
        vocab (str | Sequence[str], optional): preset names (see
            :data:`PRESETS`) and/or vocabulary files, in order.
        texts (str | Sequence[str], optional): thing names (a list, or
            mmdet's ``'person . car'`` string).
        stuff_texts (str | Sequence[str], optional): stuff names.

    Returns:
        ClassVocabulary: presets and files first, then ``texts`` and
        ``stuff_texts``. Duplicates are dropped with an ``InputWarning`` that
        names them: a name equal to an earlier one up to case and whitespace
        (CLIP would embed both alike and split the class's probability
        between them); the first occurrence keeps its place and role.

    Raises:
        InvalidInputError: (a ``ValueError``) an unknown preset, an empty
            vocabulary or an empty name.
    """
    parts = []
    for item in ([vocab] if isinstance(vocab, str) else list(vocab or ())):
        if item in PRESETS:
            parts.append(PRESETS[item]())
        elif osp.isfile(item):
            parts.append(read_vocabulary_file(item))
        else:
            raise InvalidInputError(f'Unknown vocabulary {item!r}: a preset ({", ".join(PRESETS)}) '
                                    'or a file of names.')
    parts.append(ClassVocabulary(parse_class_names(texts), parse_class_names(stuff_texts)))
    out = combine_vocabularies(parts)
    if not out.names:
        raise InvalidInputError(
            'The vocabulary is empty: give a preset, a file, texts or stuff_texts.')
    return out


def _is_mmdet_string(value) -> bool:
    return isinstance(value, str) and (' . ' in value or value.rstrip().endswith(' .'))


def _per_image(value, num_images: int) -> list:
    """``value`` per image: a list of lists (or of mmdet strings) gives one
    entry per image; anything else is shared."""
    if isinstance(value,
                  (list, tuple)) and value and (all(isinstance(v, (list, tuple)) for v in value)
                                                or all(map(_is_mmdet_string, value))):
        if len(value) != num_images:
            raise ValueError(f'{len(value)} per-image vocabularies for {num_images} images.')
        return list(value)
    return [value] * num_images


def per_image_vocabularies(num_images: int,
                           vocab: Union[None, str, Sequence[str]] = None,
                           texts=None,
                           stuff_texts=None) -> List[ClassVocabulary]:
    """One :class:`ClassVocabulary` per image (see :func:`build_vocabulary`).

    ``texts`` / ``stuff_texts`` may hold one entry per image: a list of name
    lists, or a list of mmdet strings (``['person . car', 'sky .']``); a flat
    list of names is one vocabulary for every image.
    """
    return [
        build_vocabulary(vocab, t, s)
        for t, s in zip(_per_image(texts, num_images), _per_image(stuff_texts, num_images))
    ]
