# Copyright (c) mmmaskclip contributors. All rights reserved.
from .lvis_metric import LVISCompatMetric, numpy_float_alias

__all__ = ['LVISCompatMetric', 'numpy_float_alias']
