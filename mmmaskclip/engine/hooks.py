# Copyright (c) mmmaskclip contributors. All rights reserved.
"""A progress bar over the test (and validation) images."""
from typing import Optional, Sequence

from mmdet.registry import HOOKS
from mmengine.hooks import Hook
from mmengine.utils import ProgressBar


@HOOKS.register_module()
class TestProgressBarHook(Hook):
    """Show a progress bar while testing or validating (rank 0 only).

    Benchmarks run for an hour or more on large validation sets; the runner's
    log prints a line every ``interval`` iterations only. ``tools/test.py``
    adds this hook unless ``--no-progress`` is given.
    """

    priority = 'VERY_LOW'

    def __init__(self) -> None:
        self._bar: Optional[ProgressBar] = None

    def _start(self, runner, loader) -> None:
        if runner.rank == 0:
            self._bar = ProgressBar(len(loader))

    def _step(self, runner) -> None:
        if self._bar is not None:
            self._bar.update()

    def _stop(self) -> None:
        if self._bar is not None:
            self._bar.file.write('\n')
            self._bar = None

    def before_test_epoch(self, runner) -> None:
        self._start(runner, runner.test_dataloader)

    def after_test_iter(self,
                        runner,
                        batch_idx: int,
                        data_batch=None,
                        outputs: Optional[Sequence] = None) -> None:
        self._step(runner)

    def after_test_epoch(self, runner, metrics=None) -> None:
        self._stop()

    def before_val_epoch(self, runner) -> None:
        self._start(runner, runner.val_dataloader)

    def after_val_iter(self,
                       runner,
                       batch_idx: int,
                       data_batch=None,
                       outputs: Optional[Sequence] = None) -> None:
        self._step(runner)

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._stop()
