# Copyright (c) mmmaskclip contributors. All rights reserved.
"""tools/analysis_tools/benchmark_text_encoder.py runs, its variants agree and
its work counts match the tokens."""
import json

import pytest
import torch
from conftest import load_script, make_tiny_clip


@pytest.fixture(scope='module')
def tool():
    return load_script('tools/analysis_tools/benchmark_text_encoder.py')


def test_make_names(tool):
    names = tool.make_names(['cat', 'dog', 'sky'], 7)
    assert names == ['cat', 'dog', 'sky', 'cat 1', 'dog 1', 'sky 1', 'cat 2']
    assert len(set(tool.make_names(['a', 'b'], 50))) == 50


def test_positions_and_variants_on_a_tiny_tower(tool, tmp_path):
    """Work counted by hand from the token lengths, and every variant gives
    the same embeddings (the cached one bit for bit)."""
    from mmmaskclip.models.text import MaskCLIPTextEncoder
    encoder = MaskCLIPTextEncoder(
        make_tiny_clip(seed=6), batch_size=2, cache_size=0, cache_dir=False, progress=False)
    names = ['a small red toy rabbit on a sofa', 'cat', 'the old tree by the river', 'dog', 'sky']
    lengths = [int((row != 0).sum()) for row in encoder.tokenizer(names)]
    assert tool.positions_run(encoder, names, 'full') == 5 * 77
    # name order: (0, 1), (2, 3), (4); by length: (0, 2), (1, 3) or (1, 4)...
    in_order = 2 * max(lengths[:2]) + 2 * max(lengths[2:4]) + lengths[4]
    ranked = sorted(lengths, reverse=True)
    by_length = 2 * ranked[0] + 2 * ranked[2] + ranked[4]
    assert tool.positions_run(encoder, names, 'trimmed') == in_order
    assert tool.positions_run(encoder, names, 'sorted') == by_length < in_order
    times, outputs = tool.measure(encoder, names, list(tool.VARIANTS), 1, str(tmp_path))
    assert set(times) == set(tool.VARIANTS)
    assert all(len(t['wall']) == len(t['cpu']) == 1 for t in times.values())
    for variant in ('trimmed', 'sorted'):
        torch.testing.assert_close(outputs[variant], outputs['full'], atol=1e-5, rtol=0)
    assert torch.equal(outputs['cached'], outputs['sorted'])
    assert sorted(p.name for p in tmp_path.iterdir()) == ['cold-0', 'warm']


@pytest.mark.slow
def test_benchmark_text_encoder(tool, tmp_path):
    out = tmp_path / 'text.json'
    assert tool.main([
        '--model', 'ViT-B-16', '--vocab', 'ade20k', '--num-names', '48', '--repeats', '1',
        '--batch-size', '16', '--out',
        str(out)
    ]) == 0
    result = json.loads(out.read_text())
    assert result['names'] == 48 and result['templates'] == 1 and result['prompts'] == 48
    assert list(result['variants']) == ['full', 'trimmed', 'sorted', 'cached']
    assert all(diff < 1e-5 for diff in result['max_abs_difference'].values())  # == full
    assert result['cached_bitwise_equal'] is True
    positions = {k: v['positions'] for k, v in result['variants'].items()}
    assert positions['full'] == 48 * 77
    assert positions['sorted'] == positions['cached'] <= positions['trimmed'] < positions['full']
    assert all(result[f'{k}_s'] > 0 for k in positions)
