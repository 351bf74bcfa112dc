# Copyright (c) mmmaskclip contributors. All rights reserved.
from .lvis_metric import LVISCompatMetric, numpy_float_alias
from .reordered_metrics import ReorderedCocoMetric, ReorderedSemSegMetric

__all__ = ['LVISCompatMetric', 'numpy_float_alias', 'ReorderedCocoMetric',
           'ReorderedSemSegMetric']
