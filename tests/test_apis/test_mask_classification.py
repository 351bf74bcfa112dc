# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Training-free mask classification: model, API, configs and demo."""
import os.path as osp

import numpy as np
import pytest
import torch
from conftest import load_script, tiny_clip_cfg
from mmengine.config import Config
from PIL import Image

from mmdet.registry import MODELS
from mmmaskclip.apis import (classify_masks, draw_mask_classification, init_mask_classifier,
                             load_masks)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = {
    'maskclip': osp.join(REPO, 'configs/maskclip/maskclip-wo-rma_vit-l-14-336_mask-classification.py'),
    'baseline': osp.join(REPO, 'configs/maskclip/clip-baseline_vit-l-14-336_mask-classification.py'),
}
VOCAB = ['cat', 'dog, puppy', 'red car']


def tiny_options(tmp_path, clip):
    """--cfg-options that swap ViT-L for the tiny CLIP saved to a file."""
    path = str(tmp_path / 'tiny_clip.pt')
    torch.save(clip.state_dict(), path)
    return {'model.clip': dict(_delete_=True, model_cfg=tiny_clip_cfg(), pretrained=path),
            'model.input_size': (64, 64)}


@pytest.mark.parametrize('variant', ['maskclip', 'baseline'])
def test_full_mask_logits_equal_clip_zero_shot(variant, tiny_clip, tmp_path):
    """A whole-image mask is classified exactly as CLIP zero-shot classifies
    the image: logits = 100 * cos(encode_image, encode_text)."""
    model = init_mask_classifier(CONFIGS[variant], cfg_options=tiny_options(tmp_path, tiny_clip))
    images = torch.randn(2, 3, 64, 64)
    logits = model(images, torch.ones(2, 1, 64, 64), ['cat', 'dog'])
    import open_clip
    tokens = open_clip.SimpleTokenizer()(['cat', 'dog'])
    ref = 100 * tiny_clip.encode_image(images, normalize=True) @ tiny_clip.encode_text(
        tokens, normalize=True).t()
    torch.testing.assert_close(logits[:, 0], ref, atol=1e-3, rtol=1e-5)


def test_configs_are_registered():
    for path in CONFIGS.values():
        cfg = Config.fromfile(path)
        assert cfg.default_scope == 'mmdet'
        assert cfg.custom_imports['imports'] == ['mmmaskclip']
        for key in ('region_encoder', 'text_encoder'):
            assert MODELS.get(cfg.model[key]['type']) is not None
        assert cfg.model.clip.name == 'ViT-L-14-336' and cfg.model.clip.pretrained == 'openai'
    assert Config.fromfile(CONFIGS['baseline']).model.region_encoder.type == 'CLIPBaselineEncoder'


def write_scene(tmp_path):
    image = np.zeros((48, 80, 3), dtype=np.uint8)
    image[:, :40] = (200, 30, 30)
    image[:, 40:] = (30, 30, 200)
    label = np.zeros((48, 80), dtype=np.uint8)
    label[:, :40] = 3
    label[10:30, 50:70] = 9
    Image.fromarray(image).save(tmp_path / 'img.png')
    Image.fromarray(label).save(tmp_path / 'label.png')
    return str(tmp_path / 'img.png'), str(tmp_path / 'label.png'), label


def test_classify_masks_and_draw(tiny_clip, tmp_path):
    img_path, label_path, label = write_scene(tmp_path)
    model = init_mask_classifier(CONFIGS['maskclip'], cfg_options=tiny_options(tmp_path, tiny_clip))
    result = classify_masks(model, img_path, label_path, VOCAB)
    assert result.probs.shape == (2, 3)
    np.testing.assert_allclose(result.probs.sum(1), 1, rtol=1e-5)
    assert list(result.labels) == list(result.probs.argmax(1))
    assert result.names() == [VOCAB[i] for i in result.labels]
    # the same masks given as an array at another resolution give the same result
    small = np.stack([label == 3, label == 9])[:, ::2, ::2]
    again = classify_masks(model, np.asarray(Image.open(img_path)), small, VOCAB)
    np.testing.assert_allclose(again.probs, result.probs, atol=1e-4)
    out = tmp_path / 'vis.png'
    drawn = draw_mask_classification(np.asarray(Image.open(img_path)), load_masks(label_path),
                                     result, out_file=str(out))
    assert out.exists() and drawn.shape == (48, 80, 3)
    assert (drawn != np.asarray(Image.open(img_path))).any()
    with pytest.raises(TypeError, match='list of names'):
        classify_masks(model, img_path, label_path, 'cat')


def test_load_masks_formats(tmp_path):
    label = np.zeros((6, 5), dtype=np.uint8)
    label[:2] = 4
    label[4:, 1:3] = 7
    Image.fromarray(label).save(tmp_path / 'l.png')
    masks = load_masks(str(tmp_path / 'l.png'))
    assert masks.shape == (2, 6, 5) and masks[0].sum() == 10 and masks[1].sum() == 4
    pan = np.zeros((6, 5, 3), dtype=np.uint8)
    pan[:3] = (1, 1, 0)  # id 257
    pan[3:] = (2, 0, 0)
    Image.fromarray(pan).save(tmp_path / 'p.png')
    assert load_masks(str(tmp_path / 'p.png')).shape == (2, 6, 5)
    np.save(tmp_path / 'm.npy', np.random.randn(3, 6, 5))
    assert load_masks(str(tmp_path / 'm.npy')).dtype == bool
    with pytest.raises(FileNotFoundError):
        load_masks(str(tmp_path / 'missing.png'))
    with pytest.raises(ValueError, match=r'\(M, H, W\)'):
        load_masks(np.zeros((4, 4)))


def test_demo_script(tiny_clip, tmp_path, capsys):
    demo = load_script('tools/demo/mask_classification_demo.py')
    img_path, label_path, _ = write_scene(tmp_path)
    path = str(tmp_path / 'tiny_clip.pt')
    torch.save(tiny_clip.state_dict(), path)
    cfg = tmp_path / 'tiny.py'
    cfg.write_text(f"_base_ = ['{CONFIGS['maskclip']}']\n"
                   f'model = dict(clip=dict(_delete_=True, model_cfg={tiny_clip_cfg()!r}, '
                   f"pretrained={path!r}), input_size=(64, 64))\n")
    out = tmp_path / 'out.png'
    assert demo.main([img_path, label_path, '--vocab', 'cat', 'dog', '--config', str(cfg),
                      '--out', str(out)]) == 0
    assert out.exists()
    assert 'mask   1:' in capsys.readouterr().out
