# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Loading CLIP: config checks, quick-GELU tags, offline errors for URLs."""
import os.path as osp

import open_clip
import pytest
import torch

from mmmaskclip.models import CLIPWeightsNotFoundError, build_clip_model


def test_config_errors():
    with pytest.raises(ValueError, match='exactly one'):
        build_clip_model(dict(pretrained='openai'))
    with pytest.raises(ValueError, match='exactly one'):
        build_clip_model(dict(name='ViT-B-16', model_cfg=dict()))
    with pytest.raises(ValueError, match="Unknown open_clip model name 'ViT-Q-99'"):
        build_clip_model(dict(name='ViT-Q-99', pretrained='openai'))
    with pytest.raises(TypeError, match='only'):
        build_clip_model(dict(model_cfg=dict(), force_quick_gelu=True))
    with pytest.raises(CLIPWeightsNotFoundError, match='neither a file'):
        build_clip_model(dict(model_cfg=dict(), pretrained='/no/such/file.pt'))


def test_quick_gelu_follows_the_tag(monkeypatch):
    """OpenAI weights need QuickGELU; open_clip itself only warns."""
    seen = {}

    def fake_create_model(name, **kwargs):
        seen.update(kwargs, name=name)
        return torch.nn.Linear(1, 1)

    monkeypatch.setattr(open_clip, 'create_model', fake_create_model)
    build_clip_model(dict(name='ViT-L-14-336', pretrained='openai'))
    assert seen['force_quick_gelu'] is True and seen['pretrained'] == 'openai'
    seen.clear()
    build_clip_model(dict(name='ViT-B-16', pretrained='laion2b_s34b_b88k'))
    assert 'force_quick_gelu' not in seen


def test_unreachable_hub_fails_fast_with_a_hint(monkeypatch, tmp_path):
    from huggingface_hub import constants
    monkeypatch.setattr(constants, 'ENDPOINT', 'https://hub.invalid')  # never resolves (RFC 2606)
    with pytest.raises(CLIPWeightsNotFoundError) as err:
        build_clip_model(dict(name='ViT-B-16', pretrained='openai', cache_dir=str(tmp_path)))
    msg = str(err.value)
    assert 'timm/vit_base_patch16_clip_224.openai' in msg and str(tmp_path) in msg
    assert "pretrained='/path/to/" in msg


def test_url_offline_names_the_cache_file(monkeypatch, tmp_path, tiny_clip):
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path))
    url = 'http://127.0.0.1:9/clip/tiny_clip_20260101.pth'  # closed port: refused at once
    from conftest import tiny_clip_cfg
    with pytest.raises(CLIPWeightsNotFoundError) as err:
        build_clip_model(dict(model_cfg=tiny_clip_cfg(), pretrained=url))
    assert str(tmp_path / 'checkpoints' / 'tiny_clip_20260101.pth') in str(err.value)


def test_url_loads_a_cached_model_zoo_file(monkeypatch, tmp_path, tiny_clip):
    """A URL whose file is already in torch hub's cache loads offline."""
    from conftest import tiny_clip_cfg
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path))
    (tmp_path / 'checkpoints').mkdir()
    torch.save({'state_dict': tiny_clip.state_dict()},
               tmp_path / 'checkpoints' / 'tiny_clip_20260101.pth')
    model = build_clip_model(
        dict(
            model_cfg=tiny_clip_cfg(), pretrained='https://example.invalid/tiny_clip_20260101.pth'))
    for (k, a), b in zip(model.state_dict().items(), tiny_clip.state_dict().values()):
        assert torch.equal(a, b), k


def test_proposer_checkpoint_offline_names_the_file(monkeypatch, tmp_path):
    """The model-zoo proposer offline: one sentence naming the file to place."""
    from mmdet.registry import MODELS

    from mmmaskclip.models.proposers import ProposerWeightsNotFoundError
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path))
    url = 'http://127.0.0.1:9/mmdet/mask2former_r50_coco-panoptic_20230118-54df384a.pth'
    detector = dict(
        type='MaskRCNN',
        backbone=dict(type='ResNet', depth=18),
        rpn_head=None,
        roi_head=None,
        train_cfg=None,
        test_cfg=None,
        data_preprocessor=dict(
            type='DetDataPreprocessor', mean=[0, 0, 0], std=[1, 1, 1], bgr_to_rgb=True))
    with pytest.raises(ProposerWeightsNotFoundError) as err:
        MODELS.build(dict(type='DetectorProposer', detector=detector, checkpoint=url))
    assert str(tmp_path / 'checkpoints' / osp.basename(url)) in str(err.value)
    with pytest.raises(ProposerWeightsNotFoundError, match='not found'):
        MODELS.build(
            dict(
                type='DetectorProposer',
                detector=detector,
                checkpoint=str(tmp_path / 'missing.pth')))
