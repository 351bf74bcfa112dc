# Copyright (c) mmmaskclip contributors. All rights reserved.
"""tools/analysis_tools/benchmark_text_encoder.py runs and its two variants agree."""
import json

import pytest
from conftest import load_script


@pytest.mark.slow
def test_benchmark_text_encoder(tmp_path):
    tool = load_script('tools/analysis_tools/benchmark_text_encoder.py')
    out = tmp_path / 'text.json'
    assert tool.main([
        '--model', 'ViT-B-16', '--vocab', 'ade20k', '--num-names', '48', '--repeats', '1', '--out',
        str(out)
    ]) == 0
    result = json.loads(out.read_text())
    assert result['names'] == 48 and result['templates'] == 1
    assert result['max_abs_difference'] < 1e-5  # trimmed == full context
    assert result['trimmed_s'] > 0 and result['full_s'] > 0
