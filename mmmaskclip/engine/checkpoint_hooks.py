# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Save Runner checkpoints that load under ``weights_only`` with no allow-list."""
import logging
import random

import numpy as np
import torch
from mmdet.registry import HOOKS
from mmengine.hooks import Hook
from mmengine.logging import print_log

from mmmaskclip.utils.checkpoint import from_plain_data, non_plain_paths, to_plain_data


@HOOKS.register_module()
class PlainCheckpointHook(Hook):
    """Store the message hub and metadata of checkpoints as plain data.

    mmengine's Runner checkpoints pickle the message hub's ``HistoryBuffer``
    objects (numpy arrays, and their statistics methods through
    ``builtins.getattr``) and numpy scalars such as the ``best_score`` of
    ``CheckpointHook(save_best=...)``. Loading them with torch's
    ``weights_only=True`` then needs those globals allow-listed
    (:mod:`mmmaskclip.utils.checkpoint`). Before a checkpoint is saved, this
    hook replaces them by tagged dicts of lists and numbers
    (:func:`~mmmaskclip.utils.checkpoint.to_plain_data`), so that
    ``torch.load(path, weights_only=True)`` loads the file with nothing
    allow-listed. mmmaskclip's checkpoint loaders restore the objects on load
    (:func:`~mmmaskclip.utils.checkpoint.from_plain_data`), and so does
    :meth:`after_load_checkpoint`, so ``resume`` restores the same
    iteration, logging statistics and best score as an ordinary checkpoint.

    If a checkpoint still holds objects that ``weights_only`` loading would
    refuse (e.g. something a custom hook added), a warning names them once.

    The priority is ``'LOWEST'``, so that the conversion sees what the other
    hooks' ``before_save_checkpoint`` added.

    Example:
        >>> custom_hooks = [dict(type='PlainCheckpointHook')]
    """

    priority = 'LOWEST'

    def __init__(self) -> None:
        self._warned = False

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Convert ``checkpoint`` to plain data, in place (its top-level keys).

        Args:
            runner (Runner): The runner.
            checkpoint (dict): The checkpoint about to be saved.
        """
        for key, value in list(checkpoint.items()):
            checkpoint[key] = to_plain_data(value)
        if not self._warned:
            left = non_plain_paths(checkpoint)
            if left:
                self._warned = True
                print_log(
                    'These objects in the checkpoint will need an allow-list to load with '
                    f"torch's weights_only=True: {', '.join(left[:10])}.",
                    logger='current',
                    level=logging.WARNING)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Restore the objects stored as plain data, in place.

        A no-op for checkpoints that mmmaskclip's loaders restored already
        and for ordinary mmengine checkpoints.

        Args:
            runner (Runner): The runner.
            checkpoint (dict): The loaded checkpoint.
        """
        for key, value in list(checkpoint.items()):
            checkpoint[key] = from_plain_data(value)


@HOOKS.register_module()
class RNGStateCheckpointHook(Hook):
    """Carry the global RNG states (torch, numpy, ``random``) through
    checkpoints, and give the training dataloader its own generator, so that
    a resumed run draws the same random numbers as an uninterrupted one.

    mmengine saves no RNG state: on resume it sets the seed again and the
    stream restarts (it drives the head's point sampling, for one). Its
    dataloader also draws a base seed from the global torch RNG each time an
    epoch starts, and the resumed run replays those epochs while skipping
    batches. The states are stored as tensors and ints, so checkpoints still
    load with ``weights_only=True`` and no allow-list. Exact equality holds
    for deterministic data pipelines (random augmentations in the main
    process, ``num_workers=0``, draw differently while batches are skipped).

    Example:
        >>> custom_hooks = [dict(type='RNGStateCheckpointHook')]
    """

    priority = 'VERY_HIGH'

    def __init__(self) -> None:
        self._resumed = None

    def before_train(self, runner) -> None:
        """Seed the training dataloader's own generator; restore the RNG
        states of a resumed checkpoint."""
        loader = runner.train_loop.dataloader
        loader.generator = torch.Generator().manual_seed(runner.seed)
        if self._resumed is not None:
            set_rng_state(self._resumed)
            self._resumed = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Add the RNG states to ``checkpoint['rng_state']``."""
        checkpoint['rng_state'] = get_rng_state()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Keep the RNG states of a loaded checkpoint for :meth:`before_train`."""
        self._resumed = checkpoint.get('rng_state')


def get_rng_state() -> dict:
    """The global RNG states as tensors and ints (loadable with
    ``weights_only=True``)."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    version, state, gauss_next = random.getstate()
    return dict(
        torch=torch.get_rng_state(),
        numpy=[torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        random=[version, torch.tensor(state, dtype=torch.int64), gauss_next])


def set_rng_state(state: dict) -> None:
    """Restore the states of :func:`get_rng_state`."""
    torch.set_rng_state(state['torch'])
    keys, pos, has_gauss, gauss = state['numpy']
    np.random.set_state(('MT19937', keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, values, gauss_next = state['random']
    random.setstate((version, tuple(int(v) for v in values), gauss_next))
