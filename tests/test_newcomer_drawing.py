# Copyright (c) mmmaskclip contributors. All rights reserved.
"""What a newcomer sees (issue 14): drawings and printed scores in one
convention (percent, one decimal), a note on a drawing that shows nothing, a
font for names in other scripts, arrays in either channel order, warnings
for images too small or too elongated for CLIP, and foreign checkpoints
named by what their keys belong to."""
import os.path as osp
import warnings

import matplotlib
import mmcv
import numpy as np
import pytest
import torch
from conftest import load_script
from tiny_maskclip import tiny_inference_config

from mmmaskclip.apis import MaskClassification, MaskCLIPInferencer, draw_mask_classification
from mmmaskclip.apis.drawing import LabelledVisualizer, score_text
from mmmaskclip.utils import InputWarning, InvalidInputError, check_checkpoint_fits

#: A TrueType file that matplotlib ships (not its default DejaVu Sans).
SERIF = osp.join(matplotlib.get_data_path(), 'fonts', 'ttf', 'DejaVuSerif.ttf')


@pytest.fixture(scope='module')
def tiny_config(tmp_path_factory):
    """A tiny MaskCLIP with RMA (random CLIP, random Mask2Former): config
    file and a 64x80 image file."""
    return tiny_inference_config(tmp_path_factory.mktemp('newcomer'))


@pytest.fixture(scope='module')
def inferencer(tiny_config):
    return MaskCLIPInferencer(tiny_config[0], device='cpu', show_progress=False)


@pytest.fixture
def drawn_texts(monkeypatch):
    """Every text drawn by a ``LabelledVisualizer`` in the test, as
    ``(text, font file)`` (None: matplotlib's default font)."""
    drawn, draw = [], LabelledVisualizer.draw_texts

    def record(self, texts, *args, **kwargs):
        count = len(self.ax_save.texts)
        result = draw(self, texts, *args, **kwargs)
        for artist in self.ax_save.texts[count:]:
            drawn.append((artist.get_text(), artist.get_fontproperties().get_file()))
        return result

    monkeypatch.setattr(LabelledVisualizer, 'draw_texts', record)
    return drawn


def classification(scores, names=('roof', 'sky')) -> tuple:
    """A 40x60 image, one mask per score (left and right half, ...) and a
    ``MaskClassification`` labelling mask ``i`` with ``names[i]``."""
    image = np.full((40, 60, 3), 90, np.uint8)
    masks = np.zeros((len(scores), 40, 60), bool)
    for i in range(len(scores)):
        masks[i, :, i * 30:(i + 1) * 30] = True
    probs = np.zeros((len(scores), len(names)), np.float32)
    probs[np.arange(len(scores)), np.arange(len(scores))] = scores
    result = MaskClassification(probs, np.arange(len(scores)), np.asarray(scores, np.float32),
                                list(names))
    return image, masks, result


# ------------------------------------------------------------------ scores
def test_scores_are_percent_with_one_decimal_on_drawings(drawn_texts, tiny_config, inferencer):
    """The mask-classification drawing and the inferencer's instance
    drawing label ``name: 74.3%``, as :func:`score_text` prints it."""
    assert score_text(0.743) == '74.3%' and score_text(1) == '100.0%'
    image, masks, result = classification([0.743, 0.5])
    draw_mask_classification(image, masks, result)
    assert sorted(text for text, _ in drawn_texts) == ['roof: 74.3%', 'sky: 50.0%']
    drawn_texts.clear()
    inferencer(
        tiny_config[1], texts=['rabbit'], tasks=['instance'], pred_score_thr=0.0, return_vis=True)
    assert drawn_texts and all(t.startswith('rabbit: ') and t.endswith('%') for t, _ in drawn_texts)


def test_web_demo_table_scores_read_as_on_the_drawing(tiny_config, inferencer):
    web_demo = load_script('tools/demo/web_demo.py')
    sample = inferencer(tiny_config[1], texts=['rabbit'], return_datasamples=True)['predictions'][0]
    exported = dict(classes=['rabbit'])
    rows = web_demo.segment_rows(sample, 'instance', exported, 1, -1.0)
    assert rows and [row[4]
                     for row in rows] == [score_text(s) for s in sample.pred_instances.scores]


# ------------------------------------------------------------------- empty
def test_empty_mask_classification_drawing_says_so(drawn_texts, tmp_path):
    image, masks, result = classification([0.743, 0.5])
    out = tmp_path / 'empty.png'
    drawing = draw_mask_classification(image, masks, result, out_file=str(out), score_thr=0.9)
    assert [text for text, _ in drawn_texts] == ['nothing above the score threshold 0.9']
    assert (drawing[:8, :20] != image[:8, :20]).any()  # the note, top left
    assert (drawing[-10:] == image[-10:]).all()  # no mask drawn
    assert np.array_equal(mmcv.imread(str(out), channel_order='rgb'), drawing)
    drawn_texts.clear()
    draw_mask_classification(image, masks[:0], classification([])[2])
    assert [text for text, _ in drawn_texts] == ['no mask to draw']


def test_empty_inferencer_drawings_say_so(tiny_config, inferencer, tmp_path, capsys):
    """Nothing above the threshold (instances: ``pred_score_thr``; panoptic:
    the post-processor's ``object_mask_thr``) is written on the drawing,
    noted in ``empty_drawings`` and printed by the demo."""
    config, image = tiny_config
    name = osp.basename(image)
    bare = inferencer(
        image, texts=['rabbit'], tasks=['instance'], pred_score_thr=1.5,
        return_vis=True)['visualization'][0]
    assert inferencer.empty_drawings == [
        f'{name} (instance): nothing above the score threshold 1.5'
    ]
    assert (bare[:6, :30] != mmcv.imread(image, channel_order='rgb')[:6, :30]).any()
    post = inferencer.model.post_processor
    thr, post.object_mask_thr = post.object_mask_thr, 1.0
    try:
        inferencer(
            image, texts=['rabbit'], stuff_texts=['sky'], tasks=['panoptic'], return_vis=True)
    finally:
        post.object_mask_thr = thr
    assert inferencer.empty_drawings == [f'{name} (panoptic): nothing above the score threshold 1']
    demo = load_script('tools/demo/demo.py')
    argv = [image, '--texts', 'rabbit', '--config', config, '--device', 'cpu', '--task', 'all']
    assert demo.main(argv + ['--score-thr', '1.5', '--out-dir', str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f'nothing drawn on {name} (instance): nothing above the score threshold 1.5' in out


# -------------------------------------------------------------------- fonts
def test_font_file_draws_the_names(drawn_texts, tiny_config, tmp_path):
    """A font file given to the drawing, the inferencer or the demo is the
    one every text is drawn in; a name the default font cannot draw warns
    once with the remedy; a bad font file is one sentence."""
    image, masks, result = classification([0.743, 0.5], names=('屋顶', 'sky'))
    with pytest.warns(InputWarning, match="glyph for '屋顶'.*font_path.*fonts-noto-cjk"):
        draw_mask_classification(image, masks, result)
    assert {font for _, font in drawn_texts} == {None}
    drawn_texts.clear()
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # DejaVu Serif has Latin glyphs: no warning
        draw_mask_classification(image, masks, classification([0.743, 0.5])[2], font_path=SERIF)
    assert drawn_texts and {font for _, font in drawn_texts} == {SERIF}
    drawn_texts.clear()
    config, image_file = tiny_config
    inferencer = MaskCLIPInferencer(config, device='cpu', show_progress=False, font_path=SERIF)
    inferencer(
        image_file, texts=['rabbit'], stuff_texts=['sky'], pred_score_thr=0.0, return_vis=True)
    assert drawn_texts and {font for _, font in drawn_texts} == {SERIF}
    (tmp_path / 'font.ttf').write_text('not a font')
    with pytest.raises(InvalidInputError, match='font .*font.ttf is not a font file'):
        MaskCLIPInferencer(config, device='cpu', font_path=str(tmp_path / 'font.ttf'))
    demo = load_script('tools/demo/demo.py')
    assert demo.main([image_file, '--texts', 'cat', '--config', config, '--font', 'none.ttf']) == 2


# ------------------------------------------------------------ channel order
def test_channel_order_of_arrays(tiny_config):
    """A file, its BGR array (the default ``channel_order``) and its RGB
    array with ``channel_order='rgb'`` give the same predictions and the
    same true-colour drawings."""
    config, image = tiny_config
    torch.manual_seed(0)  # the same random proposer in both
    inferencer = MaskCLIPInferencer(config, device='cpu', show_progress=False)
    torch.manual_seed(0)
    rgb_inferencer = MaskCLIPInferencer(
        config, device='cpu', show_progress=False, channel_order='rgb')
    bgr = mmcv.imread(image)
    common = dict(
        texts=['rabbit'],
        stuff_texts=['sky'],
        tasks=['panoptic', 'semantic'],
        return_vis=True,
        return_datasamples=True)
    runs = [
        inferencer(image, **common),
        inferencer(bgr, **common),
        rgb_inferencer(np.ascontiguousarray(bgr[..., ::-1]), **common)
    ]
    for out in runs[1:]:
        for field in ('pred_panoptic_seg', 'pred_sem_seg'):
            assert torch.equal(out['predictions'][0].get(field).sem_seg,
                               runs[0]['predictions'][0].get(field).sem_seg)
        assert torch.equal(out['predictions'][0].pred_instances.scores,
                           runs[0]['predictions'][0].pred_instances.scores)
        np.testing.assert_array_equal(out['visualization'][0], runs[0]['visualization'][0])
    with pytest.raises(InvalidInputError, match="channel_order must be 'bgr' or 'rgb', got 'RGB'"):
        MaskCLIPInferencer(config, device='cpu', channel_order='RGB')


def test_video_frames_are_bgr_whatever_the_channel_order(tiny_config, tmp_path):
    import cv2
    config, image = tiny_config
    video = str(tmp_path / 'clip.mp4')
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*'mp4v'), 2, (80, 64))
    writer.write(mmcv.imread(image))
    writer.release()
    frames = list(mmcv.VideoReader(video))
    rgb_inferencer = MaskCLIPInferencer(
        config, device='cpu', show_progress=False, channel_order='rgb')
    common = dict(texts=['rabbit'], stuff_texts=['sky'], return_datasamples=True)
    from_video = rgb_inferencer(video, **common)['predictions'][0]
    assert rgb_inferencer.channel_order == 'rgb'
    alone = rgb_inferencer(np.ascontiguousarray(frames[0][..., ::-1]), **common)['predictions'][0]
    assert torch.equal(from_video.pred_sem_seg.sem_seg, alone.pred_sem_seg.sem_seg)
    assert torch.equal(from_video.pred_instances.scores, alone.pred_instances.scores)


# -------------------------------------------------------------- image sizes
def test_tiny_and_elongated_images_warned(inferencer):
    """Smaller than a CLIP patch (16 here): warned. More than 10:1 while
    ``encoder_input_size`` squashes: warned with the aspect-preserving
    remedy; with ``encoder_input_size=None`` (that remedy): not warned."""
    with pytest.warns(InputWarning, match='an image array is 1 x 1 pixels, smaller than one CLIP'):
        inferencer(np.zeros((1, 1, 3), np.uint8), texts=['cat'])
    thin = np.zeros((20, 400, 3), np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter('error', InputWarning)
        inferencer(thin, texts=['cat'])  # encoder_input_size None: the aspect is kept
    inferencer.model.encoder_input_size = (64, 64)
    try:
        with pytest.warns(
                InputWarning,
                match=r'is 400 x 20 pixels, a 20:1 aspect ratio that the model squashes '
                r'to its 64 x 64 encoder input.*model.encoder_input_size=None'):
            inferencer(thin, texts=['cat'])
    finally:
        inferencer.model.encoder_input_size = None


# -------------------------------------------------------------- checkpoints
def test_foreign_checkpoint_keys_named_by_their_source():
    """Mismatching keys are grouped by what they belong to: RMA (and its
    blocks), MaskCLIP's frozen parts, CLIP, a detector, or nothing of
    MaskCLIP; the frozen prefixes are the model's own."""
    from mmmaskclip.models.detectors.maskclip import FROZEN_PREFIXES
    from mmmaskclip.utils.checkpoint_files import KEY_SOURCES
    assert KEY_SOURCES[0][0] == FROZEN_PREFIXES
    model = torch.nn.Module()
    model.visual_encoder = torch.nn.Module()
    model.visual_encoder.mask_attention = torch.nn.ModuleDict({'3': torch.nn.Linear(1, 1)})
    keys = [
        'visual.conv1.weight', 'logit_scale', 'backbone.conv1.weight', 'conv1.weight',
        'proposer.backbone.conv1.weight', 'visual_encoder.mask_attention.1.x'
    ]
    with pytest.raises(InvalidInputError) as info:
        check_checkpoint_fits(model, dict.fromkeys(keys, torch.zeros(1)), 'ckpt.pth')
    message = str(info.value)
    for needle in ('lacks 2 key(s) of the model (2 of Relative Mask Attention in block(s) 3 (this '
                   "RMA config's layers): 'visual_encoder.mask_attention.3.bias'",
                   'has 6 key(s) the model does not have (1 of an mmdet detector (proposer '
                   "weights: give them as model.proposer.checkpoint): 'backbone.conv1.weight'; "
                   "1 of no MaskCLIP part (not a MaskCLIP checkpoint): 'conv1.weight'; 2 of CLIP "
                   "(CLIP weights: give them as model.clip.pretrained): 'logit_scale', ",
                   "1 of MaskCLIP's frozen parts", '1 of Relative Mask Attention in block(s) 1 (an '
                   "RMA config's checkpoint)", '; give a MaskCLIP checkpoint saved by '):
        assert needle in message, message
    assert len(message.splitlines()) == 1
