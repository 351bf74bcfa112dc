# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Mask classification: a thin API over MaskCLIP (given masks as proposals),
its demo, and agreement with MaskCLIP run on a dataset as tools/test.py does."""
import os.path as osp

import numpy as np
import pytest
import torch
from conftest import REPO, load_script
from mmengine.config import Config
from PIL import Image
from tiny_maskclip import WO_RMA_CONFIG, tiny_classifier_options, write_tiny_classifier_config

from mmmaskclip.apis import (classify_masks, draw_mask_classification, init_mask_classifier,
                             load_masks)

CONFIGS = {
    'maskclip': osp.join(REPO, WO_RMA_CONFIG),
    'baseline': osp.join(REPO, 'configs/maskclip/clip-baseline_vit-l-14-336_coco-panoptic-val.py'),
}
VOCAB = ['cat', 'dog, puppy', 'red car']


def write_scene(tmp_path, height=48):
    image = np.zeros((height, 80, 3), dtype=np.uint8)
    image[:, :40] = (200, 30, 30)
    image[:, 40:] = (30, 30, 200)
    label = np.zeros((height, 80), dtype=np.uint8)
    label[:, :40] = 3
    label[10:30, 50:70] = 9
    Image.fromarray(image).save(tmp_path / 'img.png')
    Image.fromarray(label).save(tmp_path / 'label.png')
    return str(tmp_path / 'img.png'), str(tmp_path / 'label.png'), label


@pytest.mark.parametrize('variant', ['maskclip', 'baseline'])
def test_full_mask_equals_clip_zero_shot(variant, tiny_clip, tmp_path):
    """A whole-image mask is classified as CLIP zero-shot classifies the
    image the model sees: softmax(100 * cos(encode_image, encode_text))."""
    import open_clip
    from mmengine.dataset import Compose, pseudo_collate

    from mmmaskclip.apis.inference_pipeline import inference_pipeline
    model = init_mask_classifier(
        CONFIGS[variant], cfg_options=tiny_classifier_options(tmp_path, tiny_clip))
    # 50 x 80 -> 800 x 1280 (the config's Resize): no padding to 32
    img_path, _, _ = write_scene(tmp_path, height=50)
    result = classify_masks(model, img_path, np.ones((1, 50, 80), bool), ['cat', 'dog'])
    # what the model sees: the config's pipeline, preprocessor and padding
    data = Compose(inference_pipeline(model.cfg))(dict(img_path=img_path, img_id=0))
    batch = model.data_preprocessor(pseudo_collate([data]))
    assert batch['inputs'].shape[-2:] == (800, 1280)
    inputs = batch['inputs']
    tokens = open_clip.SimpleTokenizer()(['cat', 'dog'])
    with torch.no_grad():
        ref = (100 * tiny_clip.encode_image(model.clip_images(inputs), normalize=True)
               @ tiny_clip.encode_text(tokens, normalize=True).t()).softmax(-1)
    np.testing.assert_allclose(result.probs, ref.numpy(), atol=1e-5)


def test_classify_masks_and_draw(tiny_clip, tmp_path):
    img_path, label_path, label = write_scene(tmp_path)
    model = init_mask_classifier(
        CONFIGS['maskclip'], cfg_options=tiny_classifier_options(tmp_path, tiny_clip))
    assert type(model).__name__ == 'MaskCLIP' and model.proposer.__class__.__name__ == \
        'GivenMaskProposer'
    result = classify_masks(model, img_path, label_path, VOCAB)
    assert result.probs.shape == (2, 3)
    np.testing.assert_allclose(result.probs.sum(1), 1, rtol=1e-5)
    assert list(result.labels) == list(result.probs.argmax(1))
    assert result.names() == [VOCAB[i] for i in result.labels]
    assert result.mask_logits.shape == (2, 48, 80)
    assert np.array_equal(result.mask_logits > 0, load_masks(label_path))
    # the same masks given as an array at another resolution give the same result
    # (PIL arrays are RGB; arrays are BGR by default)
    small = np.stack([label == 3, label == 9])[:, ::2, ::2]
    again = classify_masks(
        model, np.asarray(Image.open(img_path)), small, VOCAB, channel_order='rgb')
    np.testing.assert_allclose(again.probs, result.probs, atol=1e-4)
    out = tmp_path / 'vis.png'
    drawn = draw_mask_classification(
        np.asarray(Image.open(img_path)), load_masks(label_path), result, out_file=str(out))
    assert out.exists() and drawn.shape == (48, 80, 3)
    assert (drawn != np.asarray(Image.open(img_path))).any()
    with pytest.raises(TypeError, match='list of names'):
        classify_masks(model, img_path, label_path, 'cat')


def test_same_probabilities_as_maskclip_on_a_dataset(tiny_clip, tmp_path):
    """classify_masks equals MaskCLIP.predict run as tools/test.py runs it:
    the config's dataset pipeline, data preprocessor and test_step, with the
    masks as the sample's given proposals."""
    from mmdet.registry import DATASETS
    from mmengine.dataset import pseudo_collate
    from mmengine.structures import InstanceData
    from synthetic_coco import write_coco_panoptic
    data = write_coco_panoptic(
        str(tmp_path / 'coco'), num_images=1, image_size=(48, 80), split='val2017')
    model = init_mask_classifier(
        CONFIGS['maskclip'], cfg_options=tiny_classifier_options(tmp_path, tiny_clip))
    dataset_cfg = Config.fromfile(CONFIGS['maskclip']).test_dataloader.dataset
    dataset_cfg.update(
        data_root=data['data_root'],
        ann_file=data['ann_file'],
        data_prefix=data['data_prefix'],
        metainfo=data['metainfo'],
        test_mode=True)
    sample = DATASETS.build(dataset_cfg)[0]
    image = sample['data_samples'].img_path
    masks = np.stack([np.ones((48, 80), bool), np.eye(48, 80, dtype=bool)])
    sample['data_samples'].set_metainfo(dict(text=VOCAB, stuff_text=[]))
    sample['data_samples'].proposals = InstanceData(masks=torch.from_numpy(masks))
    pred = model.test_step(pseudo_collate([sample]))[0].pred_proposals
    result = classify_masks(model, image, masks, VOCAB)
    # to float rounding: GEMMs over CLIP + mask tokens may block rows differently
    np.testing.assert_allclose(result.probs, pred.probs.numpy(), rtol=1e-5, atol=1e-6)


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
    cfg = write_tiny_classifier_config(tmp_path, tiny_clip)
    out = tmp_path / 'out.png'
    assert demo.main(
        [img_path, label_path, '--vocab', 'cat', 'dog', '--config', cfg, '--out',
         str(out)]) == 0
    assert out.exists()
    assert 'mask   1:' in capsys.readouterr().out
