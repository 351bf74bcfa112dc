# Copyright (c) mmmaskclip contributors. All rights reserved.
"""The full pipeline on an image: proposer -> MaskCLIP -> pictures."""
import os.path as osp

import numpy as np
import pytest
import torch
from conftest import load_script, make_tiny_clip
from mmengine.config import Config
from synthetic_coco import write_coco_panoptic
from tiny_maskclip import shrink_mask2former, tiny_maskclip_cfg

from mmmaskclip.apis import MaskCLIPInferencer

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
M2F = 'configs/proposals/mask2former_r50_8xb2-lsj-50e_coco-panoptic_class-agnostic.py'


@pytest.fixture(scope='module')
def tiny_config(tmp_path_factory):
    """A tiny MaskCLIP (random CLIP, random class-agnostic Mask2Former)."""
    tmp = tmp_path_factory.mktemp('inferencer')
    data = write_coco_panoptic(str(tmp / 'coco'), num_images=1, image_size=(64, 80))
    clip_path = str(tmp / 'clip.pt')
    torch.save(make_tiny_clip().state_dict(), clip_path)
    detector = Config.fromfile(osp.join(REPO, M2F)).model
    shrink_mask2former(detector)
    cfg = tiny_maskclip_cfg(
        str(tmp / 'work'),
        data,
        clip_path,
        max_iters=1,
        proposer=dict(type='DetectorProposer', detector=detector),
        evaluate=True)
    cfg.test_dataloader.dataset.pipeline.insert(
        1, dict(type='Resize', scale=(96, 96), keep_ratio=True))
    cfg.visualizer = dict(type='DetLocalVisualizer', name='visualizer')
    path = str(tmp / 'tiny_maskclip.py')
    cfg.dump(path)
    return path, osp.join(data['img_dir'], sorted(__import__('os').listdir(data['img_dir']))[0])


def test_inferencer_segments_and_draws(tiny_config, tmp_path):
    """The inferencer's predictions for a vocabulary are MaskCLIP's on the
    same image read through the config's dataset (tools/test.py's path), and
    they are drawn at the original size."""
    from mmdet.registry import DATASETS
    from mmengine.dataset import pseudo_collate
    from PIL import Image
    config, image = tiny_config
    inferencer = MaskCLIPInferencer(config, device='cpu', show_progress=False)
    cfg = Config.fromfile(config)
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    texts, stuff = dataset.metainfo['thing_classes'], dataset.metainfo['stuff_classes']
    out = inferencer(
        image,
        texts=list(texts),
        stuff_texts=list(stuff),
        out_dir=str(tmp_path),
        return_datasamples=True)
    sample = out['predictions'][0]
    ref = inferencer.model.test_step(pseudo_collate([dataset[0]]))[0]
    assert sample.pred_panoptic_seg.sem_seg.shape[-2:] == (64, 80)  # the original size
    assert torch.equal(sample.pred_panoptic_seg.sem_seg, ref.pred_panoptic_seg.sem_seg)
    assert torch.equal(sample.pred_sem_seg.sem_seg, ref.pred_sem_seg.sem_seg)
    assert torch.equal(sample.pred_instances.labels, ref.pred_instances.labels)
    torch.testing.assert_close(sample.pred_instances.scores, ref.pred_instances.scores)
    picture = tmp_path / 'vis' / osp.basename(image)
    assert np.asarray(Image.open(picture)).shape[:2] == (64, 80)


def test_inferencer_rejects_bad_vocabularies(tiny_config):
    config, image = tiny_config
    inferencer = MaskCLIPInferencer(config, device='cpu', show_progress=False)
    with pytest.raises(TypeError, match='lists of class names'):
        inferencer(image, texts='rabbit')
    with pytest.raises(ValueError, match='at least one'):
        inferencer(image, texts=[])


@pytest.mark.parametrize('task', ['panoptic', 'semantic', 'instance'])
def test_image_demo(tiny_config, tmp_path, task):
    demo = load_script('tools/demo/image_demo.py')
    config, image = tiny_config
    assert demo.main([
        image, '--texts', 'rabbit', '--stuff-texts', 'sky', '--config', config, '--task', task,
        '--out-dir',
        str(tmp_path), '--device', 'cpu'
    ]) == 0
    assert (tmp_path / 'vis' / osp.basename(image)).exists()
    assert demo.main([image, '--config', config]) == 2  # no vocabulary
