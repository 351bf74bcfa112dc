# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Bad input through every public entry (the APIs, the demos, tools/test.py,
tools/train.py, the dataset converters; in-process, tiny random models): a
correct result, or one sentence naming the input and the fix (command lines:
``prog: error: <sentence>``, exit status 2), never a deep traceback or a NaN."""
import io
import re
import shutil
import warnings

import numpy as np
import pytest
import torch
from conftest import load_script
from PIL import Image
from tiny_maskclip import (WO_RMA_CONFIG, tiny_classifier_options, tiny_inference_config,
                           write_tiny_classifier_config)

from mmmaskclip.apis import (MaskCLIPInferencer, build_vocabulary, classify_masks,
                             init_mask_classifier, load_image, load_masks)
from mmmaskclip.utils import InputWarning, InvalidInputError

RGB = (np.random.RandomState(0).rand(40, 60, 3) * 255).astype(np.uint8)
NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason='needs a machine without GPU')


def one_error_line(capsys, prog: str, *needles: str) -> str:
    """The single stderr line ``prog: error: ...``, holding every needle."""
    err = capsys.readouterr().err.splitlines()
    errors = [line for line in err if 'error' in line.lower() or 'Traceback' in line]
    assert len(errors) == 1 and errors[0].startswith(f'{prog}: error: '), err
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


# ----------------------------------------------------------------- fixtures
@pytest.fixture(scope='module')
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp('bad_inputs')


@pytest.fixture(scope='module')
def classifier(tmp, tiny_clip):
    """MaskCLIP w/o RMA (the shipped config, its pipeline) with a tiny CLIP."""
    from conftest import REPO
    return init_mask_classifier(
        f'{REPO}/{WO_RMA_CONFIG}', cfg_options=tiny_classifier_options(tmp, tiny_clip))


@pytest.fixture(scope='module')
def classifier_config(tmp, tiny_clip):
    return write_tiny_classifier_config(tmp, tiny_clip)


@pytest.fixture(scope='module')
def scene(tmp):
    """An image and a label map (three masks) as files."""
    Image.fromarray(RGB).save(tmp / 'scene.png')
    Image.fromarray(
        (np.arange(40 * 60).reshape(40, 60) % 3 + 1).astype(np.uint8)).save(tmp / 'labels.png')
    return str(tmp / 'scene.png'), str(tmp / 'labels.png')


@pytest.fixture
def mask_demo(scripts, classifier_config, scene, tmp):
    """``mask_classification_demo.py`` on ``scene`` (override with
    ``image=``, ``masks=``) with the tiny config, then ``argv``."""

    def run(*argv, image=scene[0], masks=scene[1], config=classifier_config):
        return scripts['mask_classification_demo'].main([
            image, masks, '--vocab', 'cat', '--config', config, '--out',
            str(tmp / 'o.png'), *argv
        ])

    return run


@pytest.fixture(scope='module')
def inference(tmp):
    """A tiny MaskCLIP with RMA and a random Mask2Former proposer: config,
    image, and an inferencer of it."""
    config, image = tiny_inference_config(tmp / 'inference')
    return config, image, MaskCLIPInferencer(config, device='cpu', show_progress=False)


@pytest.fixture(scope='module')
def scripts():
    """The command lines, by file stem (``demo``, ``test``, ``pascal_context``...)."""
    paths = ('demo/demo.py demo/mask_classification_demo.py test.py train.py '
             'dataset_converters/coco_panoptic2agnostic.py dataset_converters/ade20k_coco_fix.py '
             'dataset_converters/coco_ovd_constrained.py dataset_converters/ade20k_847.py '
             'dataset_converters/pascal_context.py').split()
    return {path.split('/')[-1][:-3]: load_script(f'tools/{path}') for path in paths}


# --------------------------------------------------------------- vocabulary
def test_vocabulary_empty_and_blank(classifier, mask_demo, capsys):
    with pytest.raises(ValueError, match='vocabulary is empty'):
        classify_masks(classifier, RGB, np.ones((1, 4, 4)), [])
    with pytest.raises(ValueError, match='empty class name'):
        classify_masks(classifier, RGB, np.ones((1, 4, 4)), ['cat', ' \t'])
    with pytest.raises(ValueError, match='empty class name'):
        build_vocabulary(texts=['cat', '   '])
    assert mask_demo('--vocab', 'cat', ' ') == 2
    one_error_line(capsys, 'mask_classification_demo.py', 'empty class name')


def test_vocabulary_duplicates_dropped_with_a_warning(classifier):
    """Duplicates (up to case and whitespace) are dropped with one warning
    naming them; the first occurrence keeps its place and role."""
    with pytest.warns(InputWarning, match=r"'cat'.*'Cat ' \(as 'cat'\)"):
        result = classify_masks(classifier, RGB, np.ones((2, 4, 4)), ['cat', 'dog', 'cat', 'Cat '])
    assert result.class_names == ['cat', 'dog'] and result.probs.shape == (2, 2)
    with pytest.warns(InputWarning, match="'SKY'"):
        vocabulary = build_vocabulary(texts=['sky', 'car'], stuff_texts=['SKY', 'grass'])
    assert vocabulary.things == ('sky', 'car') and vocabulary.stuff == ('grass', )


def test_vocabulary_long_names_warned(classifier):
    """Names past CLIP's 77 tokens are truncated with a warning naming them
    (two names differing only after the cut get the same embedding)."""
    stem = ' '.join(f'word{i}' for i in range(80))
    with pytest.warns(InputWarning, match="77-token context.*'word0 word1"):
        result = classify_masks(classifier, RGB, np.ones((1, 4, 4)),
                                [stem + ' cat', stem + ' dog', 'short'])
    np.testing.assert_allclose(result.probs[:, 0], result.probs[:, 1], atol=1e-5)


@pytest.mark.parametrize(
    'names', [['chat', '猫', 'café', 'Hund 🐕'], ['one class'], [f'class {i}' for i in range(2000)]],
    ids=['non-ascii', 'one', '2000'])
def test_vocabulary_sizes_and_scripts_work(classifier, names):
    with warnings.catch_warnings():
        warnings.simplefilter('error', InputWarning)
        result = classify_masks(classifier, RGB, np.ones((2, 4, 4)), names)
    assert result.class_names == names and result.probs.shape == (2, len(names))
    assert np.isfinite(result.probs).all()
    np.testing.assert_allclose(result.probs.sum(1), 1, rtol=1e-5)


# ------------------------------------------------------------------- images
def _exif_rotated(path):
    image = Image.fromarray(RGB)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    image.save(path, exif=exif)


def _truncated_jpeg(path):
    buffer = io.BytesIO()
    Image.fromarray(np.random.RandomState(1).randint(0, 255, (200, 300, 3),
                                                     np.uint8)).save(buffer, 'JPEG')
    path.write_bytes(buffer.getvalue()[:int(len(buffer.getvalue()) * 0.8)])


#: case -> (file name, writer)
READABLE = {
    'grayscale': ('g.png', lambda p: Image.fromarray(RGB[..., 0]).save(p)),
    'rgba': ('a.png', lambda p: Image.fromarray(np.dstack([RGB, RGB[..., :1]])).save(p)),
    '16-bit': ('w.png', lambda p: Image.fromarray(RGB[..., 0].astype(np.uint16) * 257).save(p)),
    'palette': ('p.png', lambda p: Image.fromarray(RGB).convert('P').save(p)),
    'cmyk-jpeg': ('c.jpg', lambda p: Image.fromarray(RGB).convert('CMYK').save(p)),
    'exif-rotated': ('r.jpg', _exif_rotated),
    '1x1': ('one.png', lambda p: Image.fromarray(RGB[:1, :1]).save(p)),
    '10x4000': ('thin.png', lambda p: Image.fromarray(np.zeros((10, 4000, 3), np.uint8)).save(p)),
}
#: case -> (file name, writer, what the message says)
UNREADABLE = {
    'zero-byte': ('z.png', lambda p: p.write_bytes(b''), 'empty (0 bytes)'),
    'truncated-jpeg': ('t.jpg', _truncated_jpeg, 'cannot be decoded'),
    'text-as-png': ('notes.png', lambda p: p.write_text('not an image'), 'cannot be decoded'),
    'missing': ('missing.png', lambda p: None, 'does not exist'),
}


@pytest.mark.parametrize('case', list(READABLE))
def test_readable_images_work(classifier, tmp, case):
    name, write = READABLE[case]
    path = tmp / name
    write(path)
    image = load_image(str(path))
    with Image.open(path) as pil:
        reference = np.asarray(pil.convert('RGB')) if case != '16-bit' else None
    if case == 'exif-rotated':
        assert image.shape == (60, 40, 3)  # the orientation is applied, as mmcv does
    elif case == '16-bit':
        np.testing.assert_array_equal(image[..., 0], RGB[..., 0])  # scaled to 8 bits
    else:
        assert np.abs(image.astype(int) - reference).max() <= (2 if 'jpeg' in case else 0)
    result = classify_masks(classifier, str(path), np.ones((1, 3, 3), bool), ['cat', 'dog'])
    assert result.mask_logits.shape == (1, *image.shape[:2]) and np.isfinite(result.probs).all()


@pytest.mark.parametrize('case', list(UNREADABLE))
def test_unreadable_images_named(classifier, inference, scripts, mask_demo, tmp, capsys, case):
    """classify_masks, the inferencer and both demos name the file."""
    name, write, why = UNREADABLE[case]
    path = tmp / name
    write(path)
    with pytest.raises(InvalidInputError, match=re.escape(why)) as info:
        classify_masks(classifier, str(path), np.ones((1, 3, 3)), ['cat'])
    assert str(path) in str(info.value)
    with pytest.raises(InvalidInputError, match=re.escape(why)):
        inference[2](str(path), texts=['cat'])
    assert mask_demo(image=str(path)) == 2
    one_error_line(capsys, 'mask_classification_demo.py', str(path), why)
    argv = [str(path), '--texts', 'cat', '--config', inference[0], '--out-dir', str(tmp)]
    assert scripts['demo'].main(argv) == 2
    one_error_line(capsys, 'demo.py', str(path), 'does not exist' if case == 'missing' else why)


def test_folder_skips_bad_files(inference, scripts, tmp, capsys):
    """A bad file of a folder is reported in one line and skipped; the rest
    are segmented (the inferencer API warns, the demo prints)."""
    config, image, inferencer = inference
    folder = tmp / 'photos'
    folder.mkdir()
    for name in ('a.jpg', 'd.jpg'):
        shutil.copy(image, folder / name)
    (folder / 'b.png').write_bytes(b'')
    _truncated_jpeg(folder / 'c.jpg')
    Image.fromarray(np.zeros((2, 900, 3), np.uint8)).save(folder / 'e.png')  # resized to 0 rows
    with pytest.warns(InputWarning) as caught:
        out = inferencer(str(folder), texts=['cat'], return_datasamples=True)
    assert sorted(p.img_path.split('/')[-1] for p in out['predictions']) == ['a.jpg', 'd.jpg']
    skipped = [str(w.message).split()[2] for w in caught if w.category is InputWarning]
    assert sorted(path.split('/')[-1] for path in skipped) == ['b.png', 'c.jpg', 'e.png']
    argv = [str(folder), '--texts', 'cat', '--config', config, '--out-dir', str(tmp / 'out')]
    assert scripts['demo'].main(argv) == 0
    captured = capsys.readouterr()
    warned = [line for line in captured.err.splitlines() if 'warning' in line]
    assert len(warned) == 3 and all(
        line.startswith('demo.py: warning: skipped: ') for line in warned)
    assert 'segmented 2 image(s)' in captured.out


def test_large_and_thin_images(classifier, inference, tmp):
    """A large image works (cheap here: a tiny model); one that the test
    pipeline's keep-ratio resize would shrink to 0 rows is refused."""
    big = tmp / 'big.jpg'
    Image.fromarray(np.zeros((1500, 2000, 3), np.uint8)).save(big)
    result = classify_masks(classifier, str(big), np.ones((1, 15, 20), bool), ['cat'])
    assert result.mask_logits.shape == (1, 1500, 2000)
    Image.fromarray(np.zeros((10, 4000, 3), np.uint8)).save(tmp / 'thin.png')
    with pytest.raises(InvalidInputError, match='too elongated'):
        inference[2](str(tmp / 'thin.png'), texts=['cat'])  # its Resize is to 96 x 96


# ------------------------------------------------------------------ options
def test_mask_demo_out_option(mask_demo, tmp, capsys):
    """--out naming a folder writes <image>_labelled.png in it; a name
    without extension, or one OpenCV cannot write, is one sentence."""
    (tmp / 'drawings').mkdir()
    assert mask_demo('--out', str(tmp / 'drawings')) == 0
    assert (tmp / 'drawings' / 'scene_labelled.png').is_file()
    capsys.readouterr()
    for out, needle in ((tmp / 'noext', 'no file extension'), (tmp / 'x.xyz', 'cannot write')):
        assert mask_demo('--out', str(out)) == 2
        one_error_line(capsys, 'mask_classification_demo.py', str(out), needle)


def test_demo_options(inference, scripts, tmp, capsys):
    config, image, _ = inference
    argv = [image, '--texts', 'cat', '--config', config]
    (tmp / 'a_file').write_text('')
    assert scripts['demo'].main(argv + ['--out-dir', str(tmp / 'a_file')]) == 2
    one_error_line(capsys, 'demo.py', 'is a file')
    assert scripts['demo'].main([str(tmp / 'nothing.png')] + argv[1:]) == 2
    one_error_line(capsys, 'demo.py', 'nothing.png', 'does not exist')
    assert scripts['demo'].main(argv + ['--texts', ' ']) == 2
    one_error_line(capsys, 'demo.py', 'empty class name')


@NO_GPU
def test_cuda_without_gpu(inference, scripts, mask_demo, capsys):
    config, image, _ = inference
    argv = [image, '--texts', 'cat', '--config', config, '--device', 'cuda']
    assert scripts['demo'].main(argv) == 2
    one_error_line(capsys, 'demo.py', "'cuda'", 'finds none', '--device cpu')
    assert mask_demo('--device', 'cuda:0') == 2
    one_error_line(capsys, 'mask_classification_demo.py', "'cuda:0'", '--device cpu')
    with pytest.raises(InvalidInputError, match='CUDA GPU'):
        MaskCLIPInferencer(config, device='cuda')
    with pytest.raises(InvalidInputError, match='not a device'):
        init_mask_classifier(device='gpu')


def test_encoder_input_size_not_a_patch_multiple(inference, scripts, mask_demo, tmp, capsys):
    size = ['--cfg-options', 'model.encoder_input_size=[330,330]']
    assert mask_demo(*size) == 2
    one_error_line(capsys, 'mask_classification_demo.py', '(330, 330)', 'patch size',
                   'use e.g. (336, 336)')
    assert scripts['test'].main([inference[0], 'none', '--work-dir', str(tmp / 'w')] + size) == 2
    one_error_line(capsys, 'test.py', '(330, 330)')


# -------------------------------------------------------------------- masks
@pytest.mark.parametrize(
    'shape,fill', [((0, 40, 60), 0), ((3, 40, 60), 0), ((3, 40, 60), 1), ((2, 10, 16), 1)],
    ids=['none', 'all-empty', 'all-full', 'other-size'])
def test_mask_sets_work(classifier, mask_demo, tmp, shape, fill):
    result = classify_masks(classifier, RGB, np.full(shape, fill, bool), ['cat', 'dog'])
    assert result.probs.shape == (shape[0], 2) and np.isfinite(result.probs).all()
    assert result.mask_logits.shape == (shape[0], 40, 60)  # resized to the image
    assert result.labels.shape == result.scores.shape == (shape[0], )
    np.save(tmp / 'masks.npy', np.full(shape, fill, bool))
    assert mask_demo(masks=str(tmp / 'masks.npy')) == 0


@pytest.mark.parametrize('value', [np.nan, np.inf])
def test_non_finite_mask_logits_refused(classifier, value):
    logits = np.zeros((2, 40, 60), np.float32)
    logits[1, 3, 4] = value
    with pytest.raises(InvalidInputError, match='1 NaN or infinite'):
        classify_masks(classifier, RGB, logits, ['cat'])
    with pytest.raises(InvalidInputError, match=r'masks\[None\]'):
        load_masks(np.zeros((40, 60)))


def test_label_map_with_300_labels(classifier, tmp):
    label = (np.arange(30 * 40).reshape(30, 40) % 300 + 1).astype(np.uint16)
    label[:2] = 0
    Image.fromarray(label).save(tmp / 'many.png')
    assert load_masks(str(tmp / 'many.png')).shape == (300, 30, 40)
    result = classify_masks(classifier, RGB[:30, :40].copy(), str(tmp / 'many.png'), ['a', 'b'])
    assert result.probs.shape == (300, 2) and np.isfinite(result.probs).all()


@pytest.mark.parametrize('name,content', [('masks.png', b'text'), ('masks.npy', b'text'),
                                          ('masks.png', b'')])
def test_unreadable_mask_files_named(classifier, mask_demo, tmp, capsys, name, content):
    path = tmp / name
    path.write_bytes(content)
    with pytest.raises(InvalidInputError, match='masks file'):
        classify_masks(classifier, RGB, str(path), ['cat'])
    assert mask_demo(masks=str(path)) == 2
    one_error_line(capsys, 'mask_classification_demo.py', str(path))


# ------------------------------------------------------ checkpoints, configs
@pytest.fixture(scope='module')
def checkpoints(inference, tmp):
    """Case -> (config, checkpoint): garbage and truncated files, the tiny
    RMA model's checkpoint into its config without RMA, the reverse, and a
    ResNet-18 state dict into either."""
    from mmengine.config import Config
    config, _, inferencer = inference
    torch.save(dict(state_dict=inferencer.model.state_dict()), tmp / 'rma.pth')
    (tmp / 'truncated.pth').write_bytes((tmp / 'rma.pth').read_bytes()[:5000])
    (tmp / 'garbage.pth').write_text('not a checkpoint')
    torch.save(dict(state_dict={}), tmp / 'wo_rma.pth')  # w/o RMA: nothing trains
    torch.save(resnet18_state_dict(), tmp / 'resnet18.pth')
    cfg = Config.fromfile(config)
    cfg.model.visual_encoder.mask_attention_overrides = {}
    cfg.dump(str(tmp / 'wo_rma.py'))
    wo_rma = str(tmp / 'wo_rma.py')
    files = dict(
        garbage='garbage',
        truncated='truncated',
        wo_rma_into_rma='wo_rma',
        resnet18_into_rma='resnet18')
    cases = {case: (config, str(tmp / f'{name}.pth')) for case, name in files.items()}
    return dict(
        cases,
        rma_into_wo_rma=(wo_rma, str(tmp / 'rma.pth')),
        resnet18_into_wo_rma=(wo_rma, str(tmp / 'resnet18.pth')))


def resnet18_state_dict() -> dict:
    """torchvision's ResNet-18 weights (random), or keys like them."""
    try:
        import torchvision
    except ImportError:
        names = ('conv1.weight', 'bn1.weight', 'layer1.0.conv1.weight', 'layer1.0.bn1.weight',
                 'fc.weight', 'fc.bias')
        return {name: torch.zeros(2) for name in names}
    return torchvision.models.resnet18().state_dict()


RMA_KEYS = 'Relative Mask Attention in block(s) 1, 2 ('
FOREIGN = "of no MaskCLIP part (not a MaskCLIP checkpoint): 'bn1."


@pytest.mark.parametrize(
    'case,needles',
    [('garbage', ['not a PyTorch checkpoint']), ('truncated', ['truncated or corrupt']),
     ('rma_into_wo_rma', ['has 20 key(s) the model does not', f"20 of {RMA_KEYS}an RMA config's"]),
     ('wo_rma_into_rma', ['lacks 20 key(s) of the model', f"20 of {RMA_KEYS}this RMA config's"]),
     ('resnet18_into_rma', [f"of {RMA_KEYS}this RMA config's", FOREIGN, 'give a MaskCLIP']),
     ('resnet18_into_wo_rma', ['key(s) the model does not have (', FOREIGN, 'give a MaskCLIP'])])
def test_bad_checkpoints(checkpoints, scripts, tmp, capsys, case, needles):
    """Each refused in one sentence naming the file, the mismatching keys
    and the variant they belong to (RMA, or no MaskCLIP part at all)."""
    config, path = checkpoints[case]
    assert scripts['test'].main([config, path, '--work-dir', str(tmp / 'w')]) == 2
    line = one_error_line(capsys, 'test.py', path, *needles)
    assert 'mask_attention.1.' in line or 'rma_' not in case  # names mismatching keys
    assert 'resnet' not in case or ('lacks' in line) == case.endswith('_into_rma')
    with pytest.raises(InvalidInputError, match=re.escape(needles[-1])):
        MaskCLIPInferencer(config, weights=path, device='cpu')


def test_garbage_clip_weights(mask_demo, tmp, capsys):
    (tmp / 'clip_garbage.pt').write_text('not CLIP')
    assert mask_demo('--clip-weights', str(tmp / 'clip_garbage.pt')) == 2
    one_error_line(capsys, 'mask_classification_demo.py', 'CLIP weights',
                   str(tmp / 'clip_garbage.pt'), 'not a PyTorch checkpoint')


def test_missing_config(inference, scripts, mask_demo, tmp, capsys):
    missing = str(tmp / 'no_such_config.py')
    with pytest.raises(FileNotFoundError, match='does not exist'):
        init_mask_classifier(missing)
    with pytest.raises(FileNotFoundError, match='does not exist'):
        MaskCLIPInferencer(missing)
    assert mask_demo(config=missing) == 2
    one_error_line(capsys, 'mask_classification_demo.py', missing)
    for tool, argv in (('demo', [inference[1], '--texts', 'cat', '--config',
                                 missing]), ('test', [missing, 'none']), ('train', [missing])):
        assert scripts[tool].main(argv) == 2
        one_error_line(capsys, f'{tool}.py', missing)


def test_unknown_registry_type(inference, scripts, mask_demo, tmp, capsys):
    unknown = ['--cfg-options', 'model.proposer.type=NoSuchProposer']
    for tool, argv in (('test', [inference[0], 'none']), ('train', [inference[0]])):
        assert scripts[tool].main(argv + ['--work-dir', str(tmp / 'w')] + unknown) == 2
        one_error_line(capsys, f'{tool}.py', "model.proposer.type='NoSuchProposer'", 'registry')
    assert mask_demo('--cfg-options', 'model.visual_encoder.type=NoSuchEncoder') == 2
    one_error_line(capsys, 'mask_classification_demo.py', 'visual_encoder.type', 'NoSuchEncoder')


# --------------------------------------------------------------- converters
def test_converters_name_bad_inputs(scripts, tmp, capsys):
    from synthetic_coco import write_coco_panoptic
    data = write_coco_panoptic(str(tmp / 'coco'), num_images=2, image_size=(16, 16))
    png = sorted((tmp / 'coco' / data['data_prefix']['seg']).iterdir())[0]
    png.write_bytes(b'')
    assert scripts['coco_panoptic2agnostic'].main([data['panoptic_json']]) == 2
    one_error_line(capsys, 'coco_panoptic2agnostic.py', str(png), 'empty')
    (tmp / 'broken.json').write_text('{"images": [')
    assert scripts['coco_ovd_constrained'].main([str(tmp / 'broken.json')]) == 2
    one_error_line(capsys, 'coco_ovd_constrained.py', 'broken.json', 'not valid JSON')
    missing = str(tmp / 'nowhere')
    runs = dict(
        ade20k_coco_fix=[missing],
        ade20k_847=[missing, '-o', str(tmp / 'o')],
        pascal_context=[missing, '--mat-dir', missing],
        coco_panoptic2agnostic=[missing + '.json'])
    for name, argv in runs.items():
        assert scripts[name].main(argv) == 2
        one_error_line(capsys, f'{name}.py', missing)


def test_mask_demo_prints_percent_and_says_when_nothing_is_drawn(mask_demo, capsys):
    """The terminal reads like the picture (``cat 74.3%``) and says why a
    picture is bare."""
    assert mask_demo('--score-thr', '1.01') == 0
    out = capsys.readouterr().out
    assert re.search(r'mask +0: cat +100\.0%', out), out
    assert 'nothing drawn: nothing above the score threshold 1.01' in out
