# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Plausible mask inputs that gave silent garbage (issue 14, items 1, 2, 4
and 5 on the ``classify_masks`` side): probability masks, the channel order
of image arrays, empty masks, an image given as masks, tiny and thin images.

Tiny random CLIP (``tests/tiny_maskclip.py``), CPU only.
"""
import warnings

import cv2
import numpy as np
import pytest
import torch
from conftest import REPO, load_script
from PIL import Image
from tiny_maskclip import RMA, WO_RMA_CONFIG, tiny_classifier_options, write_tiny_classifier_config

from mmmaskclip.apis import classify_masks, init_mask_classifier, load_masks
from mmmaskclip.apis.mask_inputs import load_mask_logits
from mmmaskclip.utils import InputWarning, InvalidInputError
from mmmaskclip.utils.input_checks import warn_unusual_image_size

VOCAB = ['cat', 'dog', 'red car']
#: A two-colour scene: red left half, blue right half (RGB).
SCENE = np.zeros((48, 80, 3), np.uint8)
SCENE[:, :40] = (200, 30, 30)
SCENE[:, 40:] = (30, 30, 200)


def soft_masks(inside: float = 0.9, outside: float = 0.1) -> np.ndarray:
    """Two probability masks ``(2, 48, 80)`` of :data:`SCENE`: the left half
    and a box on the right, ``inside`` there and ``outside`` elsewhere."""
    masks = np.full((2, 48, 80), outside, np.float32)
    masks[0, :, :40] = inside
    masks[1, 10:30, 50:70] = inside
    return masks


def classifier_of(tmp, clip, **options):
    """MaskCLIP w/o RMA (the shipped config and pipeline) with a tiny CLIP;
    ``options`` are further ``cfg_options``."""
    return init_mask_classifier(
        f'{REPO}/{WO_RMA_CONFIG}', cfg_options={
            **tiny_classifier_options(tmp, clip),
            **options
        })


@pytest.fixture(scope='module')
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp('newcomer_masks')


@pytest.fixture(scope='module')
def classifier(tmp, tiny_clip):
    return classifier_of(tmp, tiny_clip)


def input_warnings(caught) -> list:
    return [str(w.message) for w in caught if issubclass(w.category, InputWarning)]


# ------------------------------------------------------------ mask values
def test_probability_masks_are_not_full_masks(classifier):
    """Probabilities in [0, 1] are inside where >= 0.5 (they used to be
    full-image masks: "inside" was > 0); soft weights reach the model as
    logits log(p / (1 - p))."""
    probs = soft_masks()
    with warnings.catch_warnings():
        warnings.simplefilter('error', InputWarning)
        result = classify_masks(classifier, SCENE, probs, VOCAB)
    binary = classify_masks(classifier, SCENE, probs >= 0.5, VOCAB)
    full = classify_masks(classifier, SCENE, np.ones_like(probs, bool), VOCAB)
    np.testing.assert_allclose(result.probs, binary.probs, atol=1e-5)
    assert np.abs(result.probs - full.probs).max() > 1e-3
    np.testing.assert_array_equal(result.mask_logits >= 0, probs >= 0.5)
    # the soft weight inside, not the +1 of a binary mask
    np.testing.assert_allclose(result.mask_logits[0, 20, 10], np.log(0.9 / 0.1), rtol=1e-4)
    np.testing.assert_array_equal(load_masks(probs), probs >= 0.5)


def test_soft_probabilities_reach_rma(tmp, tiny_clip):
    """RMA layers read the masks as probabilities: two soft masks with the
    same support but other weights are classified differently."""
    rma = classifier_of(
        tmp, tiny_clip, **{
            'model.visual_encoder':
            dict(_delete_=True, type='MaskCLIPVisualEncoder', mask_attention_overrides={1: RMA})
        })
    low = classify_masks(rma, SCENE, soft_masks(0.6, 0.0), VOCAB)
    high = classify_masks(rma, SCENE, soft_masks(0.95, 0.0), VOCAB)
    assert np.abs(low.probs - high.probs).max() > 1e-4


#: case -> (masks, mask_type, inside where, its logit there or None)
RULE = {
    'bool': (np.eye(4, dtype=bool)[None], 'auto', np.eye(4, dtype=bool), 1.0),
    'uint8-0-255': ((np.eye(4) * 255).astype(np.uint8)[None], 'auto', np.eye(4, dtype=bool), 1.0),
    'float-0-1': (np.eye(4)[None], 'auto', np.eye(4, dtype=bool), 1.0),
    'prob': (np.eye(4)[None] * 0.5 + 0.2, 'auto', np.eye(4, dtype=bool), np.log(0.7 / 0.3)),
    'logit': (np.eye(4)[None] * 3 - 1, 'auto', np.eye(4, dtype=bool), 2.0),
    'logit-zero-inside': (np.eye(4)[None] - 1, 'auto', np.eye(4, dtype=bool), 0.0),
    'explicit-prob-hard': (np.eye(4)[None], 'prob', np.eye(4, dtype=bool), np.log(1e4 - 1)),
    'explicit-logit': (np.eye(4)[None] * 3 - 1, 'logit', np.eye(4, dtype=bool), 2.0),
    'explicit-binary-ints':
    (np.eye(4, dtype=np.int64)[None] * 7, 'binary', np.eye(4, dtype=bool), 1.0),
}


@pytest.mark.parametrize('case', list(RULE))
def test_mask_type_rule(case):
    """The one rule of mask values (see ``load_mask_logits``), no warning
    where the values fit the type."""
    masks, mask_type, inside, logit = RULE[case]
    with warnings.catch_warnings():
        warnings.simplefilter('error', InputWarning)
        logits = load_mask_logits(masks, mask_type)
        binary = load_masks(torch.from_numpy(masks), mask_type)
    assert logits.dtype == np.float32 and logits.shape == (1, 4, 4)
    np.testing.assert_array_equal(binary[0], inside)
    np.testing.assert_allclose(logits[0][inside], logit, rtol=1e-4)


@pytest.mark.parametrize('masks,mask_type,needle', [
    (np.eye(4)[None] * 0.8, 'logit', 'every pixel is inside'),
    (np.ones((1, 4, 4), bool), 'logit', 'every pixel is inside'),
    (np.eye(4)[None] * 0.8 - 0.1, 'binary', 'not only 0 and 1'),
    (np.eye(4)[None] * 255.0, 'auto', 'floats beyond [0, 1], >= 0 inside) hold no negative'),
])
def test_contradicting_mask_values_warn_once(classifier, masks, mask_type, needle):
    with pytest.warns(InputWarning) as caught:
        classify_masks(classifier, SCENE, masks, VOCAB[:1], mask_type=mask_type)
    assert [needle in m for m in input_warnings(caught)] == [True]


def test_bad_mask_types_refused(tmp):
    with pytest.raises(InvalidInputError, match=r'outside \[0, 1\].*mask_type=.logit'):
        load_masks(np.eye(4)[None] * 3 - 1, 'prob')
    with pytest.raises(InvalidInputError, match='mask_type must be one of'):
        load_masks(np.eye(4)[None], 'probability')
    with pytest.raises(InvalidInputError, match='1 NaN or infinite'):
        load_masks(np.where(np.eye(4), np.nan, 0.5)[None][:, :1], 'prob')
    Image.fromarray(np.eye(8, dtype=np.uint8) * 3).save(tmp / 'labels.png')
    with pytest.raises(InvalidInputError, match="is a label map.*mask_type='prob'"):
        load_masks(str(tmp / 'labels.png'), 'prob')


# ---------------------------------------------------------- channel order
def test_image_arrays_are_bgr_unless_told(classifier, tmp):
    """One convention with the inferencer and mmdet: arrays are BGR (what
    ``cv2.imread`` gives) unless ``channel_order='rgb'``; files are files."""
    Image.fromarray(SCENE).save(tmp / 'scene.png')
    masks = soft_masks() >= 0.5
    from_file = classify_masks(classifier, str(tmp / 'scene.png'), masks, VOCAB)
    bgr = classify_masks(classifier, cv2.imread(str(tmp / 'scene.png')), masks, VOCAB)
    rgb = classify_masks(classifier, SCENE, masks, VOCAB, channel_order='rgb')
    swapped = classify_masks(classifier, SCENE, masks, VOCAB)  # RGB read as BGR
    for same in (bgr, rgb):
        np.testing.assert_array_equal(same.probs, from_file.probs)
    assert np.abs(swapped.probs - from_file.probs).max() > 1e-3
    with pytest.raises(InvalidInputError, match="channel_order must be 'bgr' or 'rgb'"):
        classify_masks(classifier, SCENE, masks, VOCAB, channel_order='RGBA')


# ------------------------------------------------------- empty and images
def test_empty_masks_named_in_one_warning(classifier):
    masks = np.zeros((9, 48, 80), bool)
    masks[[0, 2, 4], :, :40] = True
    with pytest.warns(InputWarning) as caught:
        result = classify_masks(classifier, SCENE, masks, VOCAB)
    messages = input_warnings(caught)
    assert len(messages) == 1
    assert messages[0].startswith('masks 1, 3, 5 and 3 more (6 of 9) are empty (no pixel inside)')
    assert 'scores are still reported' in messages[0]
    assert result.probs.shape == (9, 3)  # kept
    with pytest.warns(InputWarning, match=r'^mask 1 \(1 of 2\) is empty'):
        classify_masks(classifier, SCENE, masks[:2], VOCAB)


def test_image_given_as_masks_refused(tmp, tiny_clip, capsys):
    """An (H, W, 3) image array, or a picture as the masks file, is refused;
    COCO-panoptic PNGs (a few colours) and gray label maps saved as RGB
    still work."""
    scene = f'{REPO}/demo/scene.png'
    with pytest.raises(InvalidInputError, match=r'look like an \(H, W, 3\) image'):
        load_masks(cv2.imread(scene))
    with pytest.raises(InvalidInputError, match='170 distinct colours.*looks like an image'):
        load_masks(scene)
    assert load_masks(np.eye(16, dtype=np.uint8)[..., None].repeat(3, 2)).shape == (16, 16, 3)
    panoptic = np.zeros((6, 5, 3), np.uint8)
    panoptic[:3] = (1, 1, 0)  # id 257
    panoptic[3:, 2:] = (30, 200, 7)
    Image.fromarray(panoptic).save(tmp / 'panoptic.png')
    assert load_masks(str(tmp / 'panoptic.png')).sum((1, 2)).tolist() == [15, 9]
    gray = np.repeat((np.arange(30).reshape(6, 5) % 3)[..., None], 3, 2).astype(np.uint8)
    Image.fromarray(gray).save(tmp / 'gray_rgb.png')
    assert load_masks(str(tmp / 'gray_rgb.png')).shape == (2, 6, 5)
    demo = load_script('tools/demo/mask_classification_demo.py')
    config = write_tiny_classifier_config(tmp, tiny_clip)
    assert demo.main(
        [scene, scene, '--vocab', 'sky', '--config', config, '--out',
         str(tmp / 'o.png')]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith('mask_classification_demo.py: error: masks file')


def test_mask_demo_reads_probabilities(tmp, tiny_clip, capsys):
    """--mask-type: probabilities work by default; a contradicting type is
    one warning line (not two: the demo checks the masks before the model)."""
    demo = load_script('tools/demo/mask_classification_demo.py')
    Image.fromarray(SCENE).save(tmp / 'scene.png')
    np.save(tmp / 'probs.npy', soft_masks())
    argv = [
        str(tmp / 'scene.png'),
        str(tmp / 'probs.npy'), '--vocab', 'cat', 'dog', '--config',
        write_tiny_classifier_config(tmp, tiny_clip), '--out',
        str(tmp / 'o.png')
    ]
    assert demo.main(argv) == 0
    assert capsys.readouterr().err == ''
    assert demo.main(argv + ['--mask-type', 'logit']) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and 'warning:' in err[0] and 'every pixel is inside' in err[0]


# ------------------------------------------------------------ image sizes
def test_warn_unusual_image_size():
    with pytest.warns(InputWarning, match=r'^image a.png is 1 x 1 pixels, smaller than one CLIP '):
        warn_unusual_image_size(1, 1, 14, (336, 336), 'image a.png')
    with pytest.warns(InputWarning) as caught:
        message = warn_unusual_image_size(10, 4000, (14, 14), (336, 336), 'image t.png')
    assert input_warnings(caught) == [message]
    assert message.startswith('image t.png is 4000 x 10 pixels, a 400:1 aspect ratio')
    assert "cfg_options={'model.encoder_input_size': None}" in message
    assert '--cfg-options model.encoder_input_size=None' in message
    with warnings.catch_warnings():
        warnings.simplefilter('error', InputWarning)
        assert warn_unusual_image_size(10, 4000, 14, None) is None  # aspect kept
        assert warn_unusual_image_size(480, 640, 14, (336, 336)) is None
        assert warn_unusual_image_size(100, 1000, 14, (336, 336)) is None  # 10:1 passes
        assert warn_unusual_image_size(100, 1000, 14, (336, 3360)) is None  # same aspect


def test_tiny_and_thin_images_warned(classifier, tmp, tiny_clip):
    """1 x 1 and 10 x 4000 images give one sentence each; the remedy of the
    thin one (encoder_input_size=None) runs without a warning."""
    with pytest.warns(InputWarning) as caught:
        classify_masks(classifier, SCENE[:1, :1], np.ones((1, 1, 1), bool), VOCAB)
    assert [m.startswith('the image array is 1 x 1 pixels')
            for m in input_warnings(caught)] == [True]
    Image.fromarray(np.zeros((10, 4000, 3), np.uint8)).save(tmp / 'thin.png')
    with pytest.warns(InputWarning) as caught:
        classify_masks(classifier, str(tmp / 'thin.png'), np.ones((1, 10, 4000), bool), VOCAB)
    assert ['thin.png is 4000 x 10 pixels, a 400:1' in m for m in input_warnings(caught)] == [True]
    kept = classifier_of(tmp, tiny_clip, **{'model.encoder_input_size': None})
    with warnings.catch_warnings():
        warnings.simplefilter('error', InputWarning)
        result = classify_masks(kept, str(tmp / 'thin.png'), np.ones((1, 10, 4000), bool), VOCAB)
    assert result.mask_logits.shape == (1, 10, 4000) and np.isfinite(result.probs).all()
