# Copyright (c) mmmaskclip contributors. All rights reserved.
from .hooks import TestProgressBarHook
from .loops import (AUTOCAST_DTYPES, AutocastTestLoop, AutocastValLoop, UnsupportedAutocastError,
                    autocast_dtype, check_autocast, model_device_type)
from .optimizer_constructor import TrainableParamsOptimWrapperConstructor

__all__ = [
    'TestProgressBarHook', 'TrainableParamsOptimWrapperConstructor', 'AUTOCAST_DTYPES',
    'AutocastTestLoop', 'AutocastValLoop', 'UnsupportedAutocastError', 'autocast_dtype',
    'check_autocast', 'model_device_type'
]
