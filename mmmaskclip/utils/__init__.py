# Copyright (c) mmmaskclip contributors. All rights reserved.
from typing import Any

from .checkpoint import (get_runner_checkpoint_globals, install_checkpoint_allowlist,
                         runner_checkpoint_globals)
from .checkpoint_files import check_checkpoint_fits, checkpoint_error, load_checkpoint_file
from .config import resolve_config_path
from .input_checks import (InputWarning, InvalidInputError, MissingInputError, as_user_error,
                           check_channel_order, check_device, check_file, read_image, read_json,
                           run_cli, user_error, warn_unusual_image_size)

__all__ = [
    'RUNNER_CHECKPOINT_GLOBALS', 'get_runner_checkpoint_globals', 'install_checkpoint_allowlist',
    'runner_checkpoint_globals', 'resolve_config_path', 'InputWarning', 'InvalidInputError',
    'MissingInputError', 'as_user_error', 'check_checkpoint_fits', 'check_device', 'check_file',
    'checkpoint_error', 'load_checkpoint_file', 'read_image', 'read_json', 'run_cli', 'user_error',
    'check_channel_order', 'warn_unusual_image_size'
]


def __getattr__(name: str) -> Any:
    """Forward ``RUNNER_CHECKPOINT_GLOBALS``, built lazily on first access."""
    if name == 'RUNNER_CHECKPOINT_GLOBALS':
        return get_runner_checkpoint_globals()
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
