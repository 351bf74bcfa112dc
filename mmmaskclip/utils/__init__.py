# Copyright (c) mmmaskclip contributors. All rights reserved.
from typing import Any

from .checkpoint import (get_runner_checkpoint_globals, install_checkpoint_allowlist,
                         runner_checkpoint_globals)
from .config import resolve_config_path

__all__ = [
    'RUNNER_CHECKPOINT_GLOBALS', 'get_runner_checkpoint_globals', 'install_checkpoint_allowlist',
    'runner_checkpoint_globals', 'resolve_config_path'
]


def __getattr__(name: str) -> Any:
    """Forward ``RUNNER_CHECKPOINT_GLOBALS``, built lazily on first access."""
    if name == 'RUNNER_CHECKPOINT_GLOBALS':
        return get_runner_checkpoint_globals()
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
