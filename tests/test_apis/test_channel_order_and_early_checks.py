# Copyright (c) mmmaskclip contributors. All rights reserved.
"""One channel order for both Python APIs (issue 14, item 2), and input
checked before the expensive work (item 6).

The same RGB array goes through ``classify_masks`` and
``MaskCLIPInferencer``: in each, ``channel_order='rgb'`` on it, its BGR
copy under the default ``'bgr'`` and the image file give one result; the
RGB array read as BGR gives another.
"""
import os.path as osp

import mmcv
import numpy as np
import pytest
import torch
from conftest import REPO, load_script
from tiny_maskclip import WO_RMA_CONFIG, tiny_classifier_options, tiny_inference_config

from mmmaskclip.apis import MaskCLIPInferencer, classify_masks, init_mask_classifier
from mmmaskclip.utils import InvalidInputError


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """A tiny inference config and its 64x80 image; the image as RGB."""
    config, image = tiny_inference_config(tmp_path_factory.mktemp('channel_order'))
    return config, image, mmcv.imread(image, channel_order='rgb')


@pytest.fixture(scope='module')
def classifier(tmp_path_factory, tiny_clip):
    tmp = tmp_path_factory.mktemp('channel_order_classifier')
    return init_mask_classifier(
        f'{REPO}/{WO_RMA_CONFIG}', cfg_options=tiny_classifier_options(tmp, tiny_clip))


def masks_of(shape):
    masks = np.zeros((2, *shape[:2]), bool)
    masks[0, :, :shape[1] // 2] = True
    masks[1, shape[0] // 4:, shape[1] // 2:] = True
    return masks


def test_one_channel_order_through_both_apis(tiny, classifier):
    config, path, rgb = tiny
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    masks = masks_of(rgb.shape)
    names = ['house', 'tree', 'sky']

    def classify(image, **kwargs):
        return classify_masks(classifier, image, masks, names, **kwargs).probs

    reference = classify(path)
    np.testing.assert_allclose(classify(rgb, channel_order='rgb'), reference, atol=1e-6)
    np.testing.assert_allclose(classify(bgr), reference, atol=1e-6)  # the default: BGR
    assert np.abs(classify(rgb) - reference).max() > 1e-4  # RGB read as BGR differs

    def segment(image, order='bgr'):
        torch.manual_seed(0)
        inferencer = MaskCLIPInferencer(
            config, device='cpu', show_progress=False, channel_order=order)
        out = inferencer(image, texts=names[:2], stuff_texts=names[2:], return_datasamples=True)
        return out['predictions'][0].pred_sem_seg.sem_seg

    reference = segment(path)
    assert torch.equal(segment(rgb, 'rgb'), reference)
    assert torch.equal(segment(bgr), reference)


def test_vocabulary_is_checked_before_the_forward(tiny, classifier, monkeypatch):
    config, path, _ = tiny

    def no_forward(*args, **kwargs):
        raise AssertionError('the model ran before the input was checked')

    monkeypatch.setattr(classifier, 'test_step', no_forward)
    with pytest.raises(InvalidInputError):
        classify_masks(classifier, path, masks_of((64, 80)), ['cat', ' '])
    with pytest.raises(InvalidInputError):
        classify_masks(classifier, osp.dirname(path), masks_of((64, 80)), ['cat'])
    inferencer = MaskCLIPInferencer(config, device='cpu', show_progress=False)
    monkeypatch.setattr(inferencer.model, 'test_step', no_forward)
    with pytest.raises(ValueError, match='vocabulary is empty'):
        inferencer(path, texts=[])


def test_demo_checks_its_input_before_building_the_model(tiny, monkeypatch, capsys):
    demo = load_script('tools/demo/demo.py')

    def no_model(args):
        raise AssertionError('the model was built before the input was checked')

    monkeypatch.setattr(demo, 'build_inferencer', no_model)
    assert demo.main(['missing.png', '--texts', 'house', '--config', tiny[0]]) == 2
    assert 'input missing.png does not exist' in capsys.readouterr().err
