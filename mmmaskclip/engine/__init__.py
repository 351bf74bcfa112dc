# Copyright (c) mmmaskclip contributors. All rights reserved.
from .checkpoint_hooks import PlainCheckpointHook
from .hooks import TestProgressBarHook
from .loops import (AUTOCAST_DTYPES, AutocastTestLoop, AutocastValLoop, UnsupportedAutocastError,
                    autocast_dtype, check_autocast, model_device_type)
from .optimizer_constructor import TrainableParamsOptimWrapperConstructor

__all__ = [
    'PlainCheckpointHook', 'TestProgressBarHook', 'TrainableParamsOptimWrapperConstructor',
    'AUTOCAST_DTYPES', 'AutocastTestLoop', 'AutocastValLoop', 'UnsupportedAutocastError',
    'autocast_dtype', 'check_autocast', 'model_device_type'
]
