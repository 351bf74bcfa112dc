# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Vocabularies for inference: presets against the datasets' own lists, files, names."""
import json

import pytest

from mmmaskclip.apis import PRESETS, ClassVocabulary, build_vocabulary, per_image_vocabularies
from mmmaskclip.models.utils import parse_class_names
from mmmaskclip.utils import InputWarning


def dataset_lists():
    """Each preset's reference: the dataset classes' own metainfo."""
    from mmdet.datasets import CocoPanopticDataset, LVISV1Dataset
    from mmseg.datasets import COCOStuffDataset

    from mmmaskclip.datasets import (ADE20K847SegDataset, ADE20KPanopticVocabDataset,
                                     PascalContext59SegDataset, PascalContext459SegDataset)
    coco = CocoPanopticDataset.METAINFO
    ade = ADE20KPanopticVocabDataset.METAINFO
    return {
        'coco': (coco['thing_classes'], coco['stuff_classes']),
        'coco-stuff':
        (COCOStuffDataset.METAINFO['classes'][:80], COCOStuffDataset.METAINFO['classes'][80:]),
        'ade20k': (ade['thing_classes'], ade['stuff_classes']),
        'ade20k-full': ((), ADE20K847SegDataset.METAINFO['classes']),
        'pascal-context-59': ((), PascalContext59SegDataset.METAINFO['classes']),
        'pascal-context-459': ((), PascalContext459SegDataset.METAINFO['classes']),
        'lvis': ([n.replace('_', ' ') for n in LVISV1Dataset.METAINFO['classes']], ()),
    }


@pytest.mark.parametrize('preset', sorted(PRESETS))
def test_presets_are_the_datasets_lists(preset):
    things, stuff = dataset_lists()[preset]
    vocabulary = build_vocabulary(preset)
    if preset == 'lvis':  # natural phrases: same words, '(x)' spacing normalised
        assert [' '.join(n.replace('(', ' (').split()) for n in things] == list(vocabulary.things)
    else:
        assert vocabulary.things == tuple(things)
    assert vocabulary.stuff == tuple(stuff)


def test_parse_class_names_forms():
    assert parse_class_names('person . car . traffic light .') == ('person', 'car', 'traffic light')
    assert parse_class_names('person') == ('person', )
    assert parse_class_names(['sofa, couch', 'table']) == ('sofa, couch', 'table')
    assert parse_class_names(None) == ()
    with pytest.raises(ValueError, match='empty class name'):
        parse_class_names('person . . car')
    with pytest.raises(TypeError, match='list of strings'):
        parse_class_names(3)


def test_files_and_combination(tmp_path):
    text = tmp_path / 'names.txt'
    text.write_text('# my classes\ntoy rabbit\nrabbit: thing\n\nsky: stuff  # above\n')
    js = tmp_path / 'names.json'
    js.write_text(json.dumps({'things': ['empty bottle', 'rabbit'], 'stuff': ['grass']}))
    with pytest.warns(InputWarning, match="dropped.*'rabbit', 'sky'"):
        vocabulary = build_vocabulary([str(text), str(js)], texts='cat .', stuff_texts=['sky'])
    assert vocabulary == ClassVocabulary(('toy rabbit', 'rabbit', 'empty bottle', 'cat'),
                                         ('sky', 'grass'))
    assert vocabulary.names[:2] == ('toy rabbit', 'rabbit')
    bad = tmp_path / 'bad.txt'
    bad.write_text('rabbit: animal\n')
    with pytest.raises(ValueError, match=r"bad.txt:1: the role after ':'"):
        build_vocabulary(str(bad))
    with pytest.raises(ValueError, match='Unknown vocabulary'):
        build_vocabulary(str(tmp_path / 'missing.txt'))
    with pytest.raises(ValueError, match='vocabulary is empty'):
        build_vocabulary()
    with pytest.warns(InputWarning, match="'person'"):
        coco_and_more = build_vocabulary('coco', texts=['person', 'toy rabbit'])
    assert len(coco_and_more.names) == 134 and coco_and_more.things[-1] == 'toy rabbit'


def test_per_image_forms():
    shared = per_image_vocabularies(2, texts=['cat', 'dog'])
    assert shared[0] == shared[1] == ClassVocabulary(('cat', 'dog'))
    per_image = per_image_vocabularies(2, texts=['cat . dog', 'car .'], stuff_texts=['sky'])
    assert per_image == [
        ClassVocabulary(('cat', 'dog'), ('sky', )),
        ClassVocabulary(('car', ), ('sky', ))
    ]
    lists = per_image_vocabularies(2, texts=[['cat'], ['car', 'bus']])
    assert [v.things for v in lists] == [('cat', ), ('car', 'bus')]
    with pytest.raises(ValueError, match='3 per-image vocabularies for 2 images'):
        per_image_vocabularies(2, texts=[['a'], ['b'], ['c']])
