# Copyright (c) mmmaskclip contributors. All rights reserved.
"""tools/analysis_tools/benchmark.py: every measurement lands in the JSON, the
markdown and the plot, with ratios that follow from the raw times (no timing
is asserted)."""
import importlib
import json
import re

import pytest
import torch
from conftest import load_script, tiny_clip_cfg
from mmengine.config import Config
from tiny_maskclip import tiny_inference_config

VARIANTS = ('clip-baseline', 'maskclip-wo-rma', 'maskclip-rma-official', 'maskclip-rma-paper')
LABELS = {
    'plain-clip': 'plain CLIP image forward',
    'clip-baseline': 'CLIP baseline',
    'maskclip-wo-rma': 'MaskCLIP w/o RMA',
    'maskclip-rma-official': 'MaskCLIP, RMA official',
    'maskclip-rma-paper': 'MaskCLIP, RMA paper',
}
PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


@pytest.fixture(scope='module')
def tool():
    return load_script('tools/analysis_tools/benchmark.py')


def table_row(markdown: str, section: str, label: str, masks: str) -> list:
    """The cells of the row of ``label`` and ``masks`` in the ``### section`` table."""
    text = markdown.split(f'### {section}', 1)[1].split('\n### ', 1)[0]
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if len(cells) > 1 and cells[0].startswith(label) and cells[1] == masks:
            return cells
    raise AssertionError(f'no row {label!r} M={masks} under {section}')


def test_round_order_rotates_by_one_each_round(tool):
    utils = importlib.import_module('benchmark_tasks')
    assert [utils.round_order(3, r) for r in range(4)] == [[0, 1, 2], [1, 2, 0], [2, 0, 1],
                                                           [0, 1, 2]]


def test_interleaving_warms_up_times_and_drops_failed_tasks(tool):
    utils = importlib.import_module('benchmark_tasks')
    calls = []

    class Probe:

        def measure(self, fn):
            fn()
            return 1.0, 2.0

    def failing():
        raise RuntimeError('"addmm" not implemented for \'Half\'\nmore')

    tasks = [
        dict(name='a', fn=lambda: calls.append('a'), warm_fn=lambda: calls.append('wa')),
        dict(name='b', fn=lambda: calls.append('b')),
        dict(name='bad', fn=failing),
    ]
    utils.run_interleaved(tasks, repeats=2, warmup=1, probe=Probe())
    assert calls == ['wa', 'b', 'a', 'b', 'b', 'a']  # warm-ups, round 1, round 2 rotated
    assert tasks[0]['times'] == [1.0, 1.0] and tasks[0]['peaks_mib'] == [2.0, 2.0]
    assert tasks[2]['times'] == [] and tasks[2]['error'] == (
        'RuntimeError: "addmm" not implemented for \'Half\'')


def test_rma_blocks_scale_the_shipped_blocks_to_the_depth(tool):
    tasks = importlib.import_module('benchmark_tasks')
    shipped = dict.fromkeys((5, 11, 17, 23))  # 0-based, ViT-L's 24 blocks
    assert tasks.rma_blocks(shipped, 24, 24, None) == [6, 12, 18, 24]
    assert tasks.rma_blocks(shipped, 24, 12, None) == [3, 6, 9, 12]  # ViT-B
    assert tasks.rma_blocks(shipped, 24, 3, None) == [1, 2, 3]  # ceil(.75, 1.5, 2.25, 3)
    assert tasks.rma_blocks(shipped, 24, 12, [12, 4, 4]) == [4, 12]
    with pytest.raises(ValueError, match=r'outside this CLIP\'s blocks 1..12'):
        tasks.rma_blocks(shipped, 24, 12, [13])


def test_cpu_memory_probe_sees_a_known_allocation(tool):
    utils = importlib.import_module('benchmark_utils')
    probe = utils.MemoryProbe(torch.device('cpu'))
    if not probe.cpu_peak:
        pytest.skip('no /proc/self/clear_refs here')
    size_mib = 64

    def allocate():
        return torch.ones(size_mib * 2**20 // 4).sum()  # touched float32 pages

    _, peak = probe.measure(allocate)
    assert size_mib - 2 < peak < size_mib + 40
    _, none = probe.measure(lambda: None)
    assert abs(none) < 16
    assert 'VmHWM' in probe.note


def test_encoders_sweep_writes_consistent_json_markdown_and_plot(tool, tmp_path):
    out = tmp_path / 'bench'
    assert tool.main([
        '--clip-cfg',
        json.dumps(tiny_clip_cfg()), '--num-masks', '5', '2', '--repeats', '1', '--warmup', '0',
        '--dtypes', 'float32', 'bfloat16', '--out-dir',
        str(out)
    ]) == 0
    result = json.loads((out / 'benchmark.json').read_text())
    records = {(r['variant'], r['dtype'], r['num_masks']): r for r in result['encoders']}
    expected = {('plain-clip', d, None) for d in ('float32', 'bfloat16')}
    expected |= {(v, d, m) for v in VARIANTS for d in ('float32', 'bfloat16') for m in (2, 5)}
    assert set(records) == expected
    # float32 always runs; a half-precision failure is reported, not hidden
    assert all(
        len(r['times']) == 1 and r['error'] is None for r in records.values()
        if r['dtype'] == 'float32')
    failed = {key: r for key, r in records.items() if r['error']}
    assert result['encoder_settings']['rma_blocks'] == [1, 2, 3]
    assert result['encoder_settings']['shipped_rma_blocks'] == [6, 12, 18, 24]
    assert result['machine']['torch'] == torch.__version__
    assert result['machine']['torch_threads'] == torch.get_num_threads()
    markdown = (out / 'benchmark.md').read_text()
    assert markdown == tool.markdown(result) and result['machine']['cpu'] in markdown
    for (variant, dtype, masks), rec in failed.items():
        cells = table_row(markdown, f'{dtype} (torch.autocast)', LABELS[variant], str(masks))
        assert rec['times'] == [] and cells[2] == f"failed: {rec['error']}"
    for (variant, dtype, masks), rec in records.items():
        if rec['error']:
            continue
        time = rec['times'][0]
        plain = records[('plain-clip', dtype, None)]['times'][0]
        fp32 = records[(variant, 'float32', masks)]['times'][0]
        assert rec['median'] == rec['min'] == rec['max'] == time
        assert rec['x_plain'] == pytest.approx(time / plain, rel=1e-12)
        assert rec['x_float32'] == pytest.approx(time / fp32, rel=1e-12)
        section = dtype + (' (torch.autocast)' if dtype == 'bfloat16' else '')
        cells = table_row(markdown, section, LABELS[variant], '–' if masks is None else str(masks))
        assert cells[2] == f'{time:.3f}'
        assert cells[5] == f'{time / plain:.2f}'
        assert cells[8] == f'{time / fp32:.2f}'
    png = (out / 'benchmark.png').read_bytes()
    assert png.startswith(PNG_MAGIC)
    width, height = (int.from_bytes(png[16:20], 'big'), int.from_bytes(png[20:24], 'big'))
    assert (width, height) == (1200, 450)


def test_end_to_end_reports_images_per_second(tool, tmp_path):
    config, _ = tiny_inference_config(tmp_path)
    meta = Config.fromfile(config).test_dataloader.dataset.metainfo
    out = tmp_path / 'e2e'
    assert tool.main([
        '--config', config, '--random-weights', '--dtypes', 'float32', 'bfloat16', '--repeats', '2',
        '--warmup', '0', '--e2e-images', '2', '--out-dir',
        str(out)
    ]) == 0
    result = json.loads((out / 'benchmark.json').read_text())
    assert 'encoders' not in result and not (out / 'benchmark.png').exists()
    records = result['end_to_end']
    assert [r['dtype'] for r in records] == ['float32', 'bfloat16']
    markdown = (out / 'benchmark.md').read_text()
    assert 'computed once before timing' in markdown
    for rec in records:
        assert rec['error'] is None and len(rec['times']) == 2
        assert rec['image_size'] == [96, 96]  # the test Resize of the tiny config
        assert rec['num_classes'] == len(meta['thing_classes']) + len(meta['stuff_classes'])
        assert rec['fps'] == pytest.approx(4 / sum(rec['times']), rel=1e-12)
        row = re.search(rf"\| tiny_maskclip.py \| {rec['dtype']} \| 96 × 96 \| .*", markdown)
        assert row and f"| 4 | {rec['fps']:.2f} |" in row.group(0)


def test_inferencer_mode_segments_draws_and_saves_a_photo(tool, tmp_path):
    """``--inferencer``: the photo of ``--image-size`` goes through
    ``MaskCLIPInferencer`` (drawings and masks written under the output)."""
    config, _ = tiny_inference_config(tmp_path)
    out = tmp_path / 'inferencer'
    assert tool.main([
        '--config', config, '--random-weights', '--inferencer', '--image-size', '120', '200',
        '--repeats', '1', '--warmup', '0', '--out-dir',
        str(out)
    ]) == 0
    rec = json.loads((out / 'benchmark.json').read_text())['end_to_end'][0]
    assert rec['error'] is None and rec['image_size'] == [120, 200] and rec['peak_mib'] >= 0
    assert (out / 'inferencer' / 'out' / 'vis' / 'photo.png').is_file()
    assert (out / 'inferencer' / 'out' / 'preds' / 'photo_semantic.png').is_file()
    assert 'Through MaskCLIPInferencer' in (out / 'benchmark.md').read_text()


@pytest.mark.parametrize('argv, message', [
    (['--mode', 'end-to-end'], 'needs --config'),
    (['--config', 'missing.py'], 'config file not found: missing.py'),
    (['--clip-cfg', '{"embed_dim": '], 'neither a file nor JSON'),
    (['--model', 'ViT-Nope'], "unknown open_clip model 'ViT-Nope'"),
    (['--num-masks', '0'], 'must be >= 1'),
])
def test_bad_input_is_one_line(tool, tmp_path, capsys, argv, message):
    assert tool.main(argv + ['--out-dir', str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith('benchmark.py: error: ') and message in err and '\n' not in err
