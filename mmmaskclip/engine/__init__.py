# Copyright (c) mmmaskclip contributors. All rights reserved.
from .checkpoint_hooks import PlainCheckpointHook, RNGStateCheckpointHook
from .hooks import TestProgressBarHook
from .loops import (AUTOCAST_DTYPES, AutocastTestLoop, AutocastValLoop, UnsupportedAutocastError,
                    autocast_dtype, check_autocast, model_device_type)
from .optimizer_constructor import TrainableParamsOptimWrapperConstructor

__all__ = [
    'PlainCheckpointHook', 'RNGStateCheckpointHook', 'TestProgressBarHook',
    'TrainableParamsOptimWrapperConstructor', 'AUTOCAST_DTYPES', 'AutocastTestLoop',
    'AutocastValLoop', 'UnsupportedAutocastError', 'autocast_dtype', 'check_autocast',
    'model_device_type'
]
