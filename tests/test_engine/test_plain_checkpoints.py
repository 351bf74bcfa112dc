# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Checkpoints saved with ``PlainCheckpointHook`` load under ``weights_only``
with no allow-list, resume like ordinary ones, and ordinary ones still load."""
import copy
import io
import os.path as osp
import pickle
from collections import OrderedDict
from unittest import mock

import numpy as np
import pytest
import torch
from conftest import make_tiny_clip
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer
from mmengine.runner import Runner
from mmengine.runner.checkpoint import _load_checkpoint
from synthetic_coco import write_coco_panoptic
from tiny_maskclip import tiny_maskclip_cfg

import mmmaskclip  # noqa: F401  (installs the checkpoint loaders)
from mmmaskclip.engine import PlainCheckpointHook
from mmmaskclip.utils.checkpoint import PLAIN_TAG, from_plain_data, non_plain_paths, to_plain_data

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
#: A numpy scalar in the runtime info, as ``CheckpointHook(save_best=...)`` keeps one.
BEST = np.float32(0.375)


class SaveOrdinary(Hook):
    """Writes each checkpoint as mmengine would without ``PlainCheckpointHook``
    (it runs before that hook, whose priority is LOWEST)."""

    priority = 'VERY_LOW'

    def __init__(self, work_dir) -> None:
        self.work_dir = work_dir

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        runner.message_hub.update_info('toy_best', BEST)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        torch.save(copy.deepcopy(checkpoint), self.work_dir / f'ordinary_{runner.iter + 1}.pth')


class RecordHub(Hook):
    """Records the message hub that a (resumed) run starts training with."""

    def before_train(self, runner) -> None:
        self.start_iter = runner.iter
        self.hub = copy.deepcopy(runner.message_hub.state_dict())


def make_runner(setup, work_dir, name, max_iters, resume_from=None) -> Runner:
    """A tiny MaskCLIP run with ``PlainCheckpointHook``, saving every 2 iterations."""
    data, clip_path = setup
    cfg = tiny_maskclip_cfg(str(work_dir), data, clip_path, max_iters)
    cfg.experiment_name = f'plain_ckpt_{name}_{id(work_dir)}'
    cfg.default_hooks.checkpoint.interval = 2
    cfg.custom_hooks = [dict(type='PlainCheckpointHook')]
    if resume_from:
        cfg.update(load_from=str(resume_from), resume=True)
    return Runner.from_cfg(cfg)


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp('plain_ckpt_data')
    data = write_coco_panoptic(str(root / 'coco'), num_images=2, image_size=(32, 32))
    clip_path = str(root / 'tiny_clip.pt')
    torch.save(make_tiny_clip().state_dict(), clip_path)
    return data, clip_path


@pytest.fixture(scope='module')
def trained(setup, tmp_path_factory):
    """Two iterations with the hook: ``iter_2.pth`` (plain) and
    ``ordinary_2.pth`` (the same checkpoint, saved as mmengine does)."""
    work_dir = tmp_path_factory.mktemp('plain_ckpt_train')
    runner = make_runner(setup, work_dir, 'train', 2)
    runner.register_hook(SaveOrdinary(work_dir))
    runner.train()
    return work_dir / 'iter_2.pth', work_dir / 'ordinary_2.pth'


def assert_hub_equal(actual: dict, expected: dict, info_keys=None) -> None:
    """Message hub state dicts hold the same histories and runtime info (all
    of it, or the ``info_keys``)."""
    assert actual['log_scalars'].keys() == expected['log_scalars'].keys()
    for key, buffer in expected['log_scalars'].items():
        assert isinstance(actual['log_scalars'][key], HistoryBuffer)
        for got, want in zip(actual['log_scalars'][key].data, buffer.data):
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)
        assert actual['log_scalars'][key].max_length == buffer.max_length
    if info_keys is None:
        assert actual['runtime_info'].keys() == expected['runtime_info'].keys()
        assert actual['resumed_keys'] == expected['resumed_keys']
    for key in info_keys or expected['runtime_info']:
        value = expected['runtime_info'][key]
        assert type(actual['runtime_info'][key]) is type(value), key
        assert pickle.dumps(actual['runtime_info'][key]) == pickle.dumps(value), key


def test_plain_checkpoint_needs_no_allow_list(trained):
    plain, ordinary = trained
    assert torch.serialization.get_unsafe_globals_in_checkpoint(str(plain)) == []
    assert HistoryBuffer not in torch.serialization.get_safe_globals()
    with torch.serialization.safe_globals([]):
        ckpt = torch.load(plain, weights_only=True)
    assert ckpt['message_hub']['log_scalars']['train/loss'][PLAIN_TAG] == 'HistoryBuffer'
    assert ckpt['message_hub']['runtime_info']['toy_best'][PLAIN_TAG] == 'numpy_scalar'
    assert non_plain_paths(ckpt) == []
    # The control: mmengine's own file needs getattr, HistoryBuffer and numpy.
    unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(ordinary))
    assert {'builtins.getattr', 'mmengine.logging.history_buffer.HistoryBuffer'} <= set(unsafe)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(ordinary, weights_only=True)


def test_both_load_the_same_through_mmengine(trained):
    plain, ordinary = trained
    got, want = (_load_checkpoint(str(path), map_location='cpu') for path in trained)
    assert isinstance(want['message_hub']['log_scalars']['train/loss'], HistoryBuffer)
    assert_hub_equal(got['message_hub'], want['message_hub'])
    assert got['message_hub']['runtime_info']['toy_best'] == BEST
    assert got['meta'] == want['meta']
    assert got['state_dict'].keys() == want['state_dict'].keys()
    for key, value in want['state_dict'].items():
        assert torch.equal(got['state_dict'][key], value)
    assert len(got['message_hub']['log_scalars']['train/loss'].data[0]) == 2


def test_resume(trained, setup, tmp_path):
    # Resuming from the plain checkpoint starts from the message hub that the
    # first run had when it saved (what mmengine's ordinary checkpoint holds).
    # A ``meta['config']``, which mmengine's resume would run as Python code,
    # is dropped by mmmaskclip's loaders.
    marker = tmp_path / 'config_was_run'
    ckpt = torch.load(trained[0], weights_only=True)
    ckpt['meta']['config'] = f'gpu_ids = [open({str(marker)!r}, "w").close()]\n'
    torch.save(ckpt, tmp_path / 'injected.pth')
    runner = make_runner(setup, tmp_path, 'resume', 4, resume_from=tmp_path / 'injected.pth')
    record = RecordHub()
    runner.register_hook(record)
    runner.train()
    assert not marker.exists()
    assert record.start_iter == 2
    with mmmaskclip.utils.runner_checkpoint_globals():
        saved = torch.load(trained[1])['message_hub']
    # (the new run's config, name and iteration counter differ, and are not compared)
    assert_hub_equal(record.hub, saved, info_keys=('toy_best', 'epoch', 'last_ckpt'))
    # Training went on from the restored histories.
    for key, buffer in saved['log_scalars'].items():
        history = runner.message_hub.get_scalar(key).data[0]
        assert len(history) == 4
        np.testing.assert_array_equal(history[:2], buffer.data[0])
    final = tmp_path / 'iter_4.pth'
    assert torch.serialization.get_unsafe_globals_in_checkpoint(str(final)) == []


def test_executable_config_is_dropped(tmp_path):
    # The control: mmengine's Config.fromstring runs the code it is given.
    marker = tmp_path / 'config_was_run'
    code = f'gpu_ids = [open({str(marker)!r}, "w").close()]\n'
    Config.fromstring(code, file_format='.py')
    assert marker.exists()
    marker.unlink()
    path = tmp_path / 'ckpt.pth'
    torch.save(dict(meta=dict(config=code, cfg='x = 1', iter=3), state_dict={}), path)
    loaded = _load_checkpoint(str(path), map_location='cpu')
    assert loaded['meta'] == dict(cfg='x = 1', iter=3)


@pytest.mark.parametrize('value', [
    np.float64(0.1),
    np.float32(1 / 3),
    np.float16(0.5),
    np.int64(2**62 + 1),
    np.uint8(255),
    np.bool_(False),
    np.arange(6, dtype=np.int32).reshape(2, 3),
    np.linspace(0, 1, 7, dtype=np.float32)[::2],
    np.zeros((0, 3)),
    np.array(['a', 'bc']),
    np.array([1 + 2j]),
])
def test_numpy_round_trip(value):
    data = to_plain_data(dict(value=value))
    assert non_plain_paths(data) == []
    buffer = io.BytesIO()
    torch.save(data, buffer)
    buffer.seek(0)
    restored = from_plain_data(torch.load(buffer, weights_only=True))['value']
    assert type(restored) is type(value)
    assert restored.dtype == value.dtype and restored.shape == value.shape
    np.testing.assert_array_equal(restored, value)


def test_history_buffer_round_trip():
    buffer = HistoryBuffer(max_length=3)
    for value, count in ((1.5, 1), (2, 4), (0.25, 2), (7, 1)):
        buffer.update(value, count)
    restored = from_plain_data(to_plain_data(buffer))
    assert restored.max_length == 3
    np.testing.assert_array_equal(restored.data[0], [2, 0.25, 7])
    np.testing.assert_array_equal(restored.data[1], [4, 2, 1])
    # The statistics work as on the original (hand-computed smoothed mean).
    assert restored.mean(2) == buffer.mean(2) == pytest.approx((0.25 + 7) / 3)


def test_untouched_objects_are_kept():
    state = OrderedDict(weight=torch.ones(2))
    state._metadata = OrderedDict({'': dict(version=1)})
    ckpt = dict(state_dict=state, meta=dict(seed=0, shape=[1, 2]), hub=[np.float64(1.0)])
    plain = to_plain_data(ckpt)
    assert plain['state_dict'] is state and plain['meta'] is ckpt['meta']
    assert isinstance(ckpt['hub'][0], np.float64)  # the input is not modified
    restored = from_plain_data(plain)
    assert restored['state_dict'] is state and restored['state_dict']._metadata == state._metadata
    assert restored['hub'] == [1.0] and isinstance(restored['hub'][0], np.float64)
    assert from_plain_data(ckpt) is ckpt  # nothing to restore


def test_unknown_kind():
    with pytest.raises(ValueError, match='unknown kind'):
        from_plain_data(dict(x={PLAIN_TAG: 'Frobnicator'}))


@pytest.mark.parametrize('obj', [
    dict(a=[1, 2.5, 'x', None, (True, b'y')], b=torch.zeros(2), c={3}, d=torch.Size([2])),
    dict(a=np.float64(1.0)),
    dict(a=[np.zeros(2)]),
    dict(a=OrderedDict(b=HistoryBuffer())),
    dict(a=torch.float16, b=torch.device('cpu')),
    dict(a=slice(1, 2)),
])
def test_non_plain_paths_agrees_with_torch(obj, tmp_path):
    # torch's own check is the reference for what needs an allow-list.
    path = tmp_path / 'obj.pth'
    torch.save(obj, path)
    unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    assert bool(non_plain_paths(obj)) == bool(unsafe)


def test_hook_warns_about_what_it_cannot_convert():
    hook = PlainCheckpointHook()
    ckpt = dict(meta=dict(when=slice(0, 1)), message_hub=dict(best=np.float64(2.0)))
    with mock.patch('mmmaskclip.engine.checkpoint_hooks.print_log') as log:
        hook.before_save_checkpoint(None, ckpt)
        hook.before_save_checkpoint(None, copy.deepcopy(ckpt))
    assert log.call_count == 1  # once per hook
    assert "checkpoint['meta']['when'] (builtins.slice)" in log.call_args.args[0]
    assert ckpt['message_hub']['best'][PLAIN_TAG] == 'numpy_scalar'
    hook.after_load_checkpoint(None, ckpt)
    assert isinstance(ckpt['message_hub']['best'], np.float64)


@pytest.mark.parametrize('recipe', ['coco-panoptic', 'coco-panoptic-lsj'])
def test_training_recipes_save_plain_checkpoints(recipe):
    path = osp.join(REPO, f'configs/maskclip/maskclip_vit-l-14-336_8xb1-10k_{recipe}.py')
    hooks = Config.fromfile(path).custom_hooks
    assert [hook['type'] for hook in hooks] == ['PlainCheckpointHook', 'RNGStateCheckpointHook']
