# Copyright (c) mmmaskclip contributors. All rights reserved.
from .lvis_metric import LVISCompatMetric, numpy_float_alias
from .reordered_metrics import GTIgnoreSemSegMetric, ReorderedCocoMetric, ReorderedSemSegMetric

__all__ = [
    'LVISCompatMetric', 'numpy_float_alias', 'GTIgnoreSemSegMetric', 'ReorderedCocoMetric',
    'ReorderedSemSegMetric'
]
