# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Save Runner checkpoints that load under ``weights_only`` with no allow-list."""
import logging

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
