# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Runner checkpoints load under torch's ``weights_only=True`` default."""
import pickle
import shutil
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import pytest
import torch
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModel
from mmengine.runner import CheckpointLoader, Runner, load_checkpoint
from mmengine.runner.checkpoint import _load_checkpoint
from torch import nn
from torch.utils.data import Dataset

from mmmaskclip.utils import checkpoint as ckpt_utils
from mmmaskclip.utils.checkpoint import install_checkpoint_allowlist, runner_checkpoint_globals

install_checkpoint_allowlist()


class ToyDataset(Dataset):
    """Eight fixed random regression samples."""

    def __init__(self, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.inputs = torch.randn(8, 4, generator=generator)
        self.targets = torch.randn(8, 1, generator=generator)

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, idx: int) -> dict:
        return dict(inputs=self.inputs[idx], targets=self.targets[idx])


class ToyModel(BaseModel):
    """A linear regressor."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 1)

    def forward(self,
                inputs: torch.Tensor,
                targets: Optional[torch.Tensor] = None,
                mode: str = 'tensor'):
        preds = self.linear(inputs)
        if mode == 'loss':
            return dict(loss=nn.functional.mse_loss(preds, targets))
        if mode == 'predict':
            return [dict(pred=p, target=t) for p, t in zip(preds, targets)]
        return preds


class ToyMetric(BaseMetric):
    """Mean squared error, returned as a numpy scalar like many metrics."""

    default_prefix = 'toy'

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            self.results.append(float((sample['pred'] - sample['target']).pow(2).sum()))

    def compute_metrics(self, results: List[float]) -> Dict[str, np.float64]:
        return dict(mse=np.float64(np.mean(results)))


class RecordHook(Hook):
    """Records the state a resumed or loaded Runner starts training from."""

    def before_train(self, runner) -> None:
        self.start_iter = runner.iter
        self.state_dict = {k: v.clone() for k, v in runner.model.state_dict().items()}
        self.loss_history = runner.message_hub.get_scalar('train/loss').data
        self.runtime_info = dict(runner.message_hub.runtime_info)


def build_runner(work_dir: Path, name: str, max_iters: int, **kwargs) -> Runner:
    """A CPU Runner training ``ToyModel`` for ``max_iters`` iterations."""
    dataloader = dict(
        dataset=ToyDataset(),
        sampler=dict(type='DefaultSampler', shuffle=False),
        collate_fn=dict(type='default_collate'),
        batch_size=2,
        num_workers=0)
    return Runner(
        model=ToyModel(),
        work_dir=str(work_dir),
        experiment_name=name,
        train_dataloader=dataloader,
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=1),
        val_dataloader=dataloader,
        val_cfg=dict(type='ValLoop'),
        val_evaluator=[ToyMetric()],
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9)),
        param_scheduler=[
            dict(type='LinearLR', start_factor=0.5, by_epoch=False, end=2),
            dict(type='MultiStepLR', milestones=[3], by_epoch=False),
        ],
        default_hooks=dict(
            logger=dict(type='LoggerHook', interval=1),
            checkpoint=dict(
                type='CheckpointHook',
                interval=1,
                by_epoch=False,
                max_keep_ckpts=2,
                save_best='toy/mse',
                rule='less')),
        log_processor=dict(by_epoch=False),
        env_cfg=dict(dist_cfg=dict(backend='gloo')),
        launcher='none',
        randomness=dict(seed=0),
        default_scope='mmengine',
        **kwargs)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """Train two iterations and return what the iter-2 checkpoint holds."""
    work_dir = tmp_path_factory.mktemp('ckpt_train')
    runner = build_runner(work_dir, f'ckpt_train_{work_dir.name}', 2)
    runner.train()
    ckpt = work_dir / 'iter_2.pth'
    assert ckpt.is_file()
    return dict(
        ckpt=ckpt,
        state_dict={
            k: v.detach().clone()
            for k, v in runner.model.state_dict().items()
        },
        loss_history=runner.message_hub.get_scalar('train/loss').data,
        best_score=runner.message_hub.get_info('best_score'))


def assert_state_equal(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(actual[key], value, rtol=0, atol=0)


def test_plain_torch_load_rejects_runner_checkpoint(trained):
    # Without the allow-list, torch >= 2.6 refuses the Runner checkpoint:
    # the tests below would fail without ``install_checkpoint_allowlist``.
    with pytest.raises(pickle.UnpicklingError, match='HistoryBuffer'):
        torch.load(trained['ckpt'])
    with runner_checkpoint_globals():
        ckpt = torch.load(trained['ckpt'])
    assert isinstance(ckpt['message_hub']['log_scalars']['train/loss'], HistoryBuffer)
    assert isinstance(ckpt['message_hub']['runtime_info']['best_score'], np.float64)


def test_resume(trained, tmp_path):
    # torch itself allow-lists some globals process-wide (e.g. exceptions).
    globals_before = set(torch.serialization.get_safe_globals())
    record = RecordHook()
    runner = build_runner(
        tmp_path,
        f'ckpt_resume_{tmp_path.name}',
        4,
        load_from=str(trained['ckpt']),
        resume=True,
        custom_hooks=[record])
    runner.train()

    assert record.start_iter == 2
    assert_state_equal(record.state_dict, trained['state_dict'])
    history, counts = record.loss_history
    np.testing.assert_array_equal(history, trained['loss_history'][0])
    np.testing.assert_array_equal(counts, trained['loss_history'][1])
    assert record.runtime_info['best_score'] == trained['best_score']
    assert runner.iter == 4
    assert (tmp_path / 'iter_4.pth').is_file()
    assert len(runner.message_hub.get_scalar('train/loss').data[0]) == 4

    # Scoped: nothing leaked into torch's process-wide allow-list.
    assert set(torch.serialization.get_safe_globals()) == globals_before
    with pytest.raises(pickle.UnpicklingError):
        torch.load(trained['ckpt'])


def test_auto_resume(trained, tmp_path):
    # ``resume=True`` without ``load_from`` finds the latest checkpoint.
    shutil.copy(trained['ckpt'], tmp_path / 'iter_2.pth')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_2.pth'))
    record = RecordHook()
    runner = build_runner(
        tmp_path, f'ckpt_auto_{tmp_path.name}', 3, resume=True, custom_hooks=[record])
    runner.train()
    assert record.start_iter == 2
    assert_state_equal(record.state_dict, trained['state_dict'])
    assert runner.iter == 3


def test_load_from(trained, tmp_path):
    runner = Runner(
        model=ToyModel(),
        work_dir=str(tmp_path),
        experiment_name=f'ckpt_load_{tmp_path.name}',
        load_from=str(trained['ckpt']),
        resume=False,
        env_cfg=dict(dist_cfg=dict(backend='gloo')),
        launcher='none',
        default_scope='mmengine')
    runner.load_or_resume()
    assert_state_equal(runner.model.state_dict(), trained['state_dict'])

    model = ToyModel()
    load_checkpoint(model, str(trained['ckpt']), map_location='cpu')
    assert_state_equal(model.state_dict(), trained['state_dict'])
    with pytest.raises(pickle.UnpicklingError):
        torch.load(trained['ckpt'])


def test_user_safe_globals_survive(trained):
    # Globals the user allow-listed before keep being allow-listed.
    before = set(torch.serialization.get_safe_globals())
    assert np.ndarray not in before
    with torch.serialization.safe_globals([np.ndarray]):
        with runner_checkpoint_globals():
            with runner_checkpoint_globals():  # nested
                _load_checkpoint(str(trained['ckpt']), map_location='cpu')
            assert HistoryBuffer in torch.serialization.get_safe_globals()
        after = set(torch.serialization.get_safe_globals())
        assert after == before | {np.ndarray}
    assert set(torch.serialization.get_safe_globals()) == before


@pytest.mark.parametrize('value', [
    np.float32(0.5),
    np.int32(3),
    np.bool_(True),
    np.arange(3, dtype=np.float32),
])
def test_numpy_metric_values(value, tmp_path):
    # Metrics may return numpy scalars of other dtypes; ``save_best`` keeps
    # them in the runtime info of the message hub.
    path = tmp_path / 'value.pth'
    torch.save(dict(message_hub=dict(runtime_info=dict(best_score=value))), path)
    with runner_checkpoint_globals():
        loaded = torch.load(path)['message_hub']['runtime_info']['best_score']
    assert loaded.dtype == value.dtype
    np.testing.assert_array_equal(loaded, value)


def test_install_is_idempotent():
    loaders = dict(CheckpointLoader._schemes)
    register = CheckpointLoader._register_scheme
    install_checkpoint_allowlist()
    install_checkpoint_allowlist()
    assert dict(CheckpointLoader._schemes) == loaders
    assert CheckpointLoader._register_scheme == register
    assert {'', 'http://', 'open-mmlab://'} <= set(loaders)
    for loader in loaders.values():
        assert getattr(loader, ckpt_utils._WRAPPED_ATTR)
        assert not hasattr(loader.__wrapped__, ckpt_utils._WRAPPED_ATTR)
    assert loaders[''].__name__ == 'load_from_local'

    # Loaders registered later are wrapped too.
    def load_from_toy(filename, map_location=None):
        return torch.load(filename[len('mmmaskclip-toy://'):])

    try:
        CheckpointLoader.register_scheme('mmmaskclip-toy://', load_from_toy)
        wrapped = CheckpointLoader._schemes['mmmaskclip-toy://']
        assert wrapped.__wrapped__ is load_from_toy
    finally:
        CheckpointLoader._schemes.pop('mmmaskclip-toy://', None)


def test_restricted_getattr(tmp_path):
    # HistoryBuffer pickles its statistics methods through ``getattr``; no
    # other attribute may be reached that way.
    path = tmp_path / 'methods.pth'
    torch.save(dict(mean=HistoryBuffer.mean), path)
    with runner_checkpoint_globals():
        assert torch.load(path)['mean'] is HistoryBuffer.mean
    torch.save(dict(init=HistoryBuffer.__init__), path)
    with runner_checkpoint_globals():
        with pytest.raises(pickle.UnpicklingError, match='getattr'):
            torch.load(path)


def as_written_by_numpy2(src: Path, dst: Path) -> None:
    """Rewrite a torch file as numpy 2 pickles it (``numpy._core`` for ``numpy.core``)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, 'w') as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith('/data.pkl'):
                assert b'numpy.core.multiarray' in data
                data = data.replace(b'numpy.core.multiarray', b'numpy._core.multiarray')
            zout.writestr(info, data)


def loads_with(allowed: list, path: Path) -> bool:
    with torch.serialization.safe_globals(allowed):
        try:
            torch.load(path, weights_only=True)
        except pickle.UnpicklingError:
            return False
    return True


def test_every_allow_listed_global_is_needed(trained, tmp_path):
    # The files the allow-list is for: a Runner checkpoint (HistoryBuffer, arrays,
    # np.float64 best score), best scores of other numpy dtypes, and a checkpoint
    # written under numpy 2. Each global must be the one a file cannot do without.
    files = [trained['ckpt']]
    for value in (np.float32(0.5), np.int32(3), np.bool_(True)):
        files.append(tmp_path / f'{value.dtype}.pth')
        torch.save(dict(message_hub=dict(runtime_info=dict(best_score=value))), files[-1])
    files.append(tmp_path / 'numpy2.pth')
    as_written_by_numpy2(trained['ckpt'], files[-1])

    allowed = ckpt_utils.get_runner_checkpoint_globals()
    assert allowed is ckpt_utils.RUNNER_CHECKPOINT_GLOBALS  # built once
    assert all(loads_with(allowed, path) for path in files)
    for i, item in enumerate(allowed):
        rest = allowed[:i] + allowed[i + 1:]
        assert not all(loads_with(rest, path) for path in files), f'{item} is not needed'
    # ``getattr`` itself is never allow-listed, only a restricted stand-in.
    assert getattr not in allowed
