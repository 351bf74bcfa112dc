# Copyright (c) mmmaskclip contributors. All rights reserved.
from .hooks import TestProgressBarHook
from .optimizer_constructor import TrainableParamsOptimWrapperConstructor

__all__ = ['TestProgressBarHook', 'TrainableParamsOptimWrapperConstructor']
