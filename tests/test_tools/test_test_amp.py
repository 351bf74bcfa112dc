# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Mixed-precision inference from the command line: ``tools/test.py --amp``
(mmmaskclip's autocast test/val loops) and the demos' ``--dtype``."""
import glob
import json
import math
import os.path as osp
import pickle

import pytest
import torch
from conftest import REPO, load_script, make_tiny_clip
from mmengine.config import Config
from synthetic_coco import write_coco_panoptic
from test_shipped_configs import (TINY_CLIP, check_metrics, use_synthetic_data, use_tiny_models,
                                  use_tmp_runtime)
from tiny_maskclip import tiny_inference_config, tiny_maskclip_cfg

from mmmaskclip.engine import (AUTOCAST_DTYPES, UnsupportedAutocastError, autocast_dtype,
                               check_autocast)
from mmmaskclip.models import MaskCLIP

#: A shipped test config with RMA layers (their weights random: checkpoint none).
SHIPPED = 'configs/maskclip/maskclip_vit-l-14-336_coco-panoptic-val.py'
TOY_CONFIG = "test_cfg = dict(type='TestLoop', fp16=True)\nval_cfg = dict(type='{}')\n"


@pytest.fixture(scope='module')
def test_tool():
    return load_script('tools/test.py')


def autocast_spy(monkeypatch) -> list:
    """Record, for every ``MaskCLIP.encode``, whether CPU autocast is on, its
    dtype and the dtype of the region embeddings."""
    seen = []
    encode = MaskCLIP.encode

    def spy(self, *args, **kwargs):
        out = encode(self, *args, **kwargs)
        seen.append((torch.is_autocast_enabled('cpu'), torch.get_autocast_dtype('cpu'),
                     out[1].region_embeds.dtype))
        return out

    monkeypatch.setattr(MaskCLIP, 'encode', spy)
    return seen


def last_metrics(work_dir: str) -> dict:
    """Metrics of the last run, from mmengine's json log."""
    logs = sorted(glob.glob(osp.join(work_dir, '*', '*.json')))
    with open(logs[-1]) as f:
        return json.loads(f.read().strip().splitlines()[-1])


# ------------------------------------------------------- options -> config --
@pytest.mark.parametrize('argv,dtype', [(['--amp'], 'bfloat16'),
                                        (['--amp-dtype', 'float16'], 'float16'),
                                        (['--amp', '--amp-dtype', 'float16'], 'float16')])
def test_amp_switches_the_test_loop(test_tool, tmp_path, argv, dtype):
    path = tmp_path / 'toy.py'
    path.write_text(TOY_CONFIG.format('ValLoop'))
    cfg = test_tool.build_cfg(test_tool.parse_args([str(path), 'none'] + argv))
    assert cfg.test_cfg == dict(type='AutocastTestLoop', dtype=dtype)  # fp16 dropped
    assert cfg.val_cfg == dict(type='ValLoop')
    plain = test_tool.build_cfg(test_tool.parse_args([str(path), 'none']))
    assert plain.test_cfg == dict(type='TestLoop', fp16=True)


def test_amp_without_test_cfg_and_with_an_autocast_loop(test_tool, tmp_path):
    path = tmp_path / 'toy.py'
    path.write_text('model = None\n')
    cfg = test_tool.build_cfg(test_tool.parse_args([str(path), 'none', '--amp']))
    assert cfg.test_cfg == dict(type='AutocastTestLoop', dtype='bfloat16')
    path.write_text("test_cfg = dict(type='AutocastTestLoop', dtype='float16')\n")
    cfg = test_tool.build_cfg(test_tool.parse_args([str(path), 'none', '--amp']))
    assert cfg.test_cfg == dict(type='AutocastTestLoop', dtype='bfloat16')


def test_amp_refuses_other_loops_and_dtypes(test_tool, tmp_path, capsys):
    path = tmp_path / 'toy.py'
    path.write_text("test_cfg = dict(type='MyTestLoop')\n")
    with pytest.raises(test_tool.ToolError, match='--amp runs TestLoop.*MyTestLoop'):
        test_tool.build_cfg(test_tool.parse_args([str(path), 'none', '--amp']))
    with pytest.raises(SystemExit):
        test_tool.parse_args([str(path), 'none', '--amp-dtype', 'float64'])
    assert "invalid choice: 'float64'" in capsys.readouterr().err


def test_check_autocast_refuses_what_torch_would_not_do():
    check_autocast('cpu', torch.bfloat16)  # no error
    # torch only warns about these and then runs in float32
    with pytest.raises(UnsupportedAutocastError, match='cannot autocast to float64 on cpu'):
        check_autocast('cpu', torch.float64)
    if not torch.cuda.is_available():
        with pytest.raises(UnsupportedAutocastError, match='float16 on cuda'):
            check_autocast('cuda', torch.float16)
    assert autocast_dtype('float32') is None and autocast_dtype('bfloat16') is torch.bfloat16
    with pytest.raises(ValueError, match='dtype must be one of'):
        autocast_dtype('half')


def test_one_dtype_mapping():
    """The demos offer every dtype of the one mapping (the engine's, which
    the inferencer and ``classify_masks`` read too)."""
    names = {name for name in AUTOCAST_DTYPES if name}
    demos = {
        'tools/demo/demo.py': ['img.png'],
        'tools/demo/mask_classification_demo.py': ['img.png', 'm.png', '--vocab', 'cat'],
        'tools/demo/web_demo.py': [],
    }
    for script, argv in demos.items():
        parse = load_script(script).parse_args
        assert parse(argv).dtype == 'float32'
        for name in names:
            assert parse(argv + ['--dtype', name]).dtype == name
    assert set(load_script('tools/test.py').AMP_DTYPES) == names - {'float32'}


# ----------------------------------------------------------------- runs --
@pytest.fixture(scope='module')
def shipped_config(tmp_path_factory) -> tuple:
    """The shipped config with tiny models and the synthetic benchmark, as
    tests/test_shipped_configs.py runs it, written to a file."""
    tmp = tmp_path_factory.mktemp('amp_shipped')
    clip_file = str(tmp / 'tiny_clip.pt')
    torch.save(make_tiny_clip(seed=1, **TINY_CLIP).state_dict(), clip_file)
    cfg = Config.fromfile(osp.join(REPO, SHIPPED))
    use_tiny_models(cfg.model, clip_file)
    use_synthetic_data(cfg, str(tmp / 'data'), SHIPPED)
    use_tmp_runtime(cfg, str(tmp / 'work'))
    path = str(tmp / 'shipped.py')
    cfg.dump(path)
    return path, cfg


def test_amp_on_a_shipped_config(test_tool, shipped_config, tmp_path, monkeypatch):
    """``tools/test.py CONFIG none --amp`` runs every test batch under
    bfloat16 autocast (region embeddings in bfloat16) and reports the
    config's metrics; the dumped predictions load."""
    path, cfg = shipped_config
    seen = autocast_spy(monkeypatch)
    work, out = str(tmp_path / 'work'), str(tmp_path / 'preds.pkl')
    argv = [path, 'none', '--amp', '--work-dir', work, '--out', out, '--no-progress']
    assert test_tool.main(argv) == 0
    assert seen and set(seen) == {(True, torch.bfloat16, torch.bfloat16)}
    metrics = last_metrics(work)
    check_metrics(metrics, cfg.test_evaluator)
    with open(out, 'rb') as f:
        preds = pickle.load(f)
    assert len(preds) == len(seen)
    for pred in preds:
        assert math.isfinite(float(pred['pred_instances']['scores'].sum()))


@pytest.fixture(scope='module')
def tiny_config(tmp_path_factory) -> str:
    """A tiny MaskCLIP (ground-truth proposals, RMA in two blocks) with a test
    and a validation loop on two synthetic images."""
    tmp = tmp_path_factory.mktemp('amp_tiny')
    data = write_coco_panoptic(str(tmp / 'coco'), num_images=2, image_size=(64, 64))
    clip_path = str(tmp / 'clip.pt')
    torch.save(make_tiny_clip().state_dict(), clip_path)
    cfg = tiny_maskclip_cfg(
        str(tmp / 'work'),
        data,
        clip_path,
        max_iters=1,
        proposer=dict(type='GTMaskProposer'),
        evaluate=True)
    cfg.update(
        train_dataloader=None,
        train_cfg=None,
        optim_wrapper=None,
        param_scheduler=None,
        val_dataloader=cfg.test_dataloader,
        val_evaluator=cfg.test_evaluator,
        val_cfg=dict(type='AutocastValLoop', dtype='bfloat16'))
    path = str(tmp / 'tiny.py')
    cfg.dump(path)
    return path


def test_unsupported_dtype_is_a_one_line_error(test_tool, tiny_config, tmp_path, monkeypatch,
                                               capsys):
    """Where torch cannot autocast to the dtype on the model's device (as
    float16 on CPUs of older torch), test.py stops before the first batch."""
    from mmmaskclip.engine import loops

    def refuse(device_type, dtype):
        raise UnsupportedAutocastError(f'torch cannot autocast to float16 on {device_type}')

    monkeypatch.setattr(loops, 'check_autocast', refuse)
    seen = autocast_spy(monkeypatch)
    argv = [tiny_config, 'none', '--amp-dtype', 'float16', '--work-dir', str(tmp_path)]
    assert test_tool.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ('test.py: error: torch cannot autocast to float16 on cpu '
                       '(see --amp-dtype)')
    assert not seen


@pytest.mark.parametrize('dtype', ['bfloat16', 'float32'])
def test_autocast_val_loop(tiny_config, tmp_path, monkeypatch, dtype):
    """``AutocastValLoop`` validates under autocast (``'float32'``: without)."""
    from mmengine.runner import Runner
    cfg = Config.fromfile(tiny_config)
    cfg.work_dir = str(tmp_path)
    cfg.val_cfg.dtype = dtype
    seen = autocast_spy(monkeypatch)
    metrics = Runner.from_cfg(cfg).val()
    if dtype == 'bfloat16':
        expected = (True, torch.bfloat16, torch.bfloat16)
    else:  # autocast off (its dtype stays torch's default), embeddings float32
        expected = (False, torch.bfloat16, torch.float32)
    assert seen == [expected] * 2
    assert 0 <= metrics['coco_panoptic/PQ'] <= 100 and 0 <= metrics['mIoU'] <= 100


# ---------------------------------------------------------------- demos --
def test_mask_classification_demo_dtype(tiny_clip, tmp_path, capsys, monkeypatch):
    """--dtype bfloat16 classifies under autocast and labels the masks."""
    import numpy as np
    from conftest import tiny_clip_cfg
    from PIL import Image
    demo = load_script('tools/demo/mask_classification_demo.py')
    image = np.zeros((48, 80, 3), dtype=np.uint8)
    image[:, 40:] = 200
    label = np.zeros((48, 80), dtype=np.uint8)
    label[:, :40], label[10:30, 50:70] = 3, 9
    Image.fromarray(image).save(tmp_path / 'img.png')
    Image.fromarray(label).save(tmp_path / 'label.png')
    clip_path = str(tmp_path / 'clip.pt')
    torch.save(tiny_clip.state_dict(), clip_path)
    base = osp.join(REPO, 'configs/maskclip/maskclip-wo-rma_vit-l-14-336_coco-panoptic-val.py')
    cfg = tmp_path / 'tiny.py'
    cfg.write_text(f"_base_ = ['{base}']\n"
                   f'model = dict(clip=dict(_delete_=True, model_cfg={tiny_clip_cfg()!r}, '
                   f'pretrained={clip_path!r}), encoder_input_size=(64, 64))\n')
    seen = autocast_spy(monkeypatch)
    argv = [
        str(tmp_path / 'img.png'),
        str(tmp_path / 'label.png'), '--vocab', 'cat', 'dog', '--config',
        str(cfg), '--out',
        str(tmp_path / 'out.png'), '--dtype', 'bfloat16'
    ]
    assert demo.main(argv) == 0
    assert seen == [(True, torch.bfloat16, torch.bfloat16)]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith('mask   0:') and lines[1].startswith('mask   1:')


def test_web_demo_dtype(tmp_path_factory, monkeypatch, capsys):
    """web_demo.py --dtype builds the inferencer with that autocast dtype and
    serves it; a dtype torch cannot autocast to is a one-line error."""
    web_demo = load_script('tools/demo/web_demo.py')
    config, _ = tiny_inference_config(tmp_path_factory.mktemp('web_amp'))
    served = []

    class Page:

        def __init__(self, inferencer):
            served.append(inferencer)

        def queue(self, **kwargs):
            pass

        def launch(self, **kwargs):
            pass

    monkeypatch.setattr(web_demo, 'build_demo', Page)
    argv = ['--config', config, '--device', 'cpu']
    assert web_demo.main(argv + ['--dtype', 'bfloat16']) == 0
    assert served[-1].dtype is torch.bfloat16
    assert web_demo.main(argv) == 0
    assert served[-1].dtype is None

    import mmmaskclip.engine

    def refuse(device_type, dtype):
        raise UnsupportedAutocastError(f'torch cannot autocast to float16 on {device_type}')

    monkeypatch.setattr(mmmaskclip.engine, 'check_autocast', refuse)
    assert web_demo.main(argv + ['--dtype', 'float16']) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        'error: torch cannot autocast to float16 on cpu')
    assert len(served) == 2
