# Copyright (c) mmmaskclip contributors. All rights reserved.
"""mmdet's ``LVISMetric`` on NumPy >= 1.24.

The only PyPI release of ``lvis`` (0.5.3) uses ``np.float`` in
``LVISEval.accumulate``, an alias NumPy 1.24 removed: mmdet's ``LVISMetric``
then fails. :class:`LVISCompatMetric` restores the alias only while it
computes.
"""
from contextlib import contextmanager
from typing import Dict, Iterator

import numpy as np
from mmdet.evaluation import LVISMetric
from mmdet.registry import METRICS


@contextmanager
def numpy_float_alias() -> Iterator[None]:
    """Restore ``np.float`` (removed in NumPy 1.24) inside the block only."""
    if hasattr(np, 'float'):
        yield
        return
    np.float = float
    try:
        yield
    finally:
        del np.float


@METRICS.register_module()
class LVISCompatMetric(LVISMetric):
    """mmdet's ``LVISMetric``, runnable with PyPI ``lvis`` 0.5.3 on NumPy
    >= 1.24 (see the module docstring). Same arguments and results."""

    def compute_metrics(self, results: list) -> Dict[str, float]:
        """``LVISMetric.compute_metrics`` with ``np.float`` defined.

        Args:
            results (list): The processed results of each batch.

        Returns:
            dict[str, float]: The LVIS metrics.
        """
        with numpy_float_alias():
            return super().compute_metrics(results)
