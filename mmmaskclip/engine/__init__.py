# Copyright (c) mmmaskclip contributors. All rights reserved.
from .optimizer_constructor import TrainableParamsOptimWrapperConstructor

__all__ = ['TrainableParamsOptimWrapperConstructor']
