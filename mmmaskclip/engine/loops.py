# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Test and validation loops that run the model under ``torch.autocast`` with
a dtype of your choice (mixed-precision inference).

mmengine's ``TestLoop(fp16=True)`` autocasts to float16 on CUDA and to
bfloat16 on the CPU, with no say in the matter; these loops take the dtype
(``'bfloat16'`` or ``'float16'``) and refuse, before the first batch, one that
torch cannot autocast to on the model's device. Only the model's
``test_step``/``val_step`` runs under autocast: the weights stay float32 and
the evaluators see the same outputs as in a float32 run. ``tools/test.py
--amp`` switches a config's ``TestLoop`` to :class:`AutocastTestLoop`::

    test_cfg = dict(type='AutocastTestLoop', dtype='bfloat16')
    val_cfg = dict(type='AutocastValLoop', dtype='float16')
"""
import contextlib
import warnings
from typing import Dict, List, Optional, Sequence, Union

import torch
from mmdet.registry import LOOPS
from mmengine.evaluator import Evaluator
from mmengine.runner.loops import TestLoop, ValLoop, _update_losses
from torch.utils.data import DataLoader

from ..utils import user_error

#: ``dtype`` option -> the autocast dtype (None: float32, no autocast).
AUTOCAST_DTYPES = {
    None: None,
    'float32': None,
    'float16': torch.float16,
    'bfloat16': torch.bfloat16
}


@user_error
class UnsupportedAutocastError(ValueError):
    """torch cannot autocast to the requested dtype on this device."""


def autocast_dtype(name: Optional[str]) -> Optional[torch.dtype]:
    """The autocast dtype of a ``dtype`` option (see :data:`AUTOCAST_DTYPES`).

    Args:
        name (str, optional): ``'bfloat16'``, ``'float16'``, or ``'float32'``
            / None for no autocast.

    Returns:
        torch.dtype | None: the dtype, None for float32.

    Raises:
        ValueError: for any other name.
    """
    if name not in AUTOCAST_DTYPES:
        raise ValueError(f'dtype must be one of {list(AUTOCAST_DTYPES)}, got {name!r}.')
    return AUTOCAST_DTYPES[name]


def check_autocast(device_type: str, dtype: torch.dtype) -> None:
    """Make sure that ``torch.autocast(device_type, dtype)`` really autocasts.

    torch refuses some combinations with an error (bfloat16 on a GPU without
    it) and others with a mere warning, after which it silently runs in
    float32 (a dtype it does not autocast to on the CPU, CUDA asked for
    where there is none); both become this one error.

    Args:
        device_type (str): ``'cpu'``, ``'cuda'``, ...
        dtype (torch.dtype): the autocast dtype.

    Raises:
        UnsupportedAutocastError: if autocast would not run in ``dtype``.
    """
    name = str(dtype).replace('torch.', '')
    refusal = f'torch {torch.__version__} cannot autocast to {name} on {device_type}'
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            with torch.autocast(device_type, dtype=dtype):
                active = (
                    torch.is_autocast_enabled(device_type)
                    and torch.get_autocast_dtype(device_type) == dtype)
    except RuntimeError as err:  # e.g. bfloat16 on a GPU without it
        raise UnsupportedAutocastError(f'{refusal}: {err}') from None
    if not active:
        reason = '; '.join(str(w.message).strip() for w in caught) or 'autocast stays off'
        raise UnsupportedAutocastError(f'{refusal}: {reason}')


def model_device_type(model: torch.nn.Module) -> str:
    """The device type of the model's parameters (``'cpu'``, ``'cuda'``,
    ...), or mmengine's default device if it has none."""
    param = next(model.parameters(), None)
    if param is not None:
        return param.device.type
    from mmengine.device import get_device
    return get_device().split(':')[0]


class _AutocastMixin:
    """What the autocast loops share: the checked dtype and the context."""

    def __init__(self,
                 runner,
                 dataloader: Union[DataLoader, Dict],
                 evaluator: Union[Evaluator, Dict, List],
                 dtype: str = 'bfloat16') -> None:
        super().__init__(runner, dataloader, evaluator, fp16=False)
        self._init_autocast(dtype)

    def _init_autocast(self, dtype: Optional[str]) -> None:
        self.dtype = autocast_dtype(dtype)
        self.device_type = model_device_type(self.runner.model)
        if self.dtype is not None:
            check_autocast(self.device_type, self.dtype)

    def _autocast_iter(self, stage: str, idx: int, data_batch: Sequence[dict]) -> None:
        """One ``stage`` (``'test'`` or ``'val'``) batch as mmengine's loops
        run it, with the model's step under :meth:`autocast`.

        Args:
            stage (str): ``'test'`` or ``'val'``.
            idx (int): the batch index.
            data_batch (Sequence[dict]): the batch from the dataloader.
        """
        self.runner.call_hook(f'before_{stage}_iter', batch_idx=idx, data_batch=data_batch)
        with self.autocast():
            outputs = getattr(self.runner.model, f'{stage}_step')(data_batch)
        outputs, losses = _update_losses(outputs, getattr(self, f'{stage}_loss'))
        setattr(self, f'{stage}_loss', losses)
        self.evaluator.process(data_samples=outputs, data_batch=data_batch)
        self.runner.call_hook(
            f'after_{stage}_iter', batch_idx=idx, data_batch=data_batch, outputs=outputs)

    def autocast(self) -> contextlib.AbstractContextManager:
        """``torch.autocast`` to ``dtype``, or nothing for float32."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)


@LOOPS.register_module()
class AutocastTestLoop(_AutocastMixin, TestLoop):
    """mmengine's ``TestLoop`` with each ``test_step`` under ``torch.autocast``.

    Args:
        runner (Runner): the runner.
        dataloader (DataLoader | dict): the test dataloader (or its config).
        evaluator (Evaluator | dict | list): the test evaluator (or config).
        dtype (str): ``'bfloat16'`` (default) or ``'float16'``;
            ``'float32'`` runs without autocast, as ``TestLoop`` does.

    Raises:
        ValueError: for another ``dtype``.
        UnsupportedAutocastError: if torch cannot autocast to ``dtype`` on
            the model's device.
    """

    @torch.no_grad()
    def run_iter(self, idx: int, data_batch: Sequence[dict]) -> None:
        """One test batch: ``test_step`` under autocast, then the evaluator."""
        self._autocast_iter('test', idx, data_batch)


@LOOPS.register_module()
class AutocastValLoop(_AutocastMixin, ValLoop):
    """mmengine's ``ValLoop`` with each ``val_step`` under ``torch.autocast``.

    Args:
        runner (Runner): the runner.
        dataloader (DataLoader | dict): the validation dataloader (or config).
        evaluator (Evaluator | dict | list): the evaluator (or its config).
        dtype (str): ``'bfloat16'`` (default) or ``'float16'``;
            ``'float32'`` runs without autocast, as ``ValLoop`` does.

    Raises:
        ValueError: for another ``dtype``.
        UnsupportedAutocastError: if torch cannot autocast to ``dtype`` on
            the model's device.
    """

    @torch.no_grad()
    def run_iter(self, idx: int, data_batch: Sequence[dict]) -> None:
        """One validation batch: ``val_step`` under autocast, then the
        evaluator."""
        self._autocast_iter('val', idx, data_batch)
