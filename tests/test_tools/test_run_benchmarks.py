# Copyright (c) mmmaskclip contributors. All rights reserved.
"""tools/analysis_tools/run_benchmarks.py: every benchmark of a variant, one
markdown file in the paper's layout."""
import pytest
import torch
from conftest import load_script, make_tiny_clip
from synthetic_coco import write_coco_panoptic
from tiny_maskclip import tiny_maskclip_cfg


@pytest.mark.slow
def test_runs_each_benchmark_and_writes_tables(tmp_path):
    data = write_coco_panoptic(str(tmp_path / 'coco'), num_images=2, image_size=(48, 48))
    clip_path = str(tmp_path / 'clip.pt')
    torch.save(make_tiny_clip().state_dict(), clip_path)
    configs = tmp_path / 'configs'
    configs.mkdir()
    for bench in ('ade20k-150-panoptic', 'ade20k-150-semantic'):
        cfg = tiny_maskclip_cfg(
            str(tmp_path / 'unused'),
            data,
            clip_path,
            max_iters=1,
            rma_blocks=(),
            proposer=dict(type='GTMaskProposer'),
            evaluate=True)
        cfg.model.head = None
        cfg.dump(str(configs / f'tiny_vit-l-14-336_{bench}.py'))
    (configs / 'other_vit-l-14-336_ade20k-150-panoptic.py').write_text('raise SystemExit\n')
    tool = load_script('tools/analysis_tools/run_benchmarks.py')
    out = tmp_path / 'tiny.md'
    assert tool.main([
        'tiny', 'none', '--configs-dir',
        str(configs), '--work-dir',
        str(tmp_path / 'work'), '--out',
        str(out)
    ]) == 0
    text = out.read_text()
    pan = tool.last_metrics(str(tmp_path / 'work' / 'tiny' / 'ade20k-150-panoptic'))
    sem = tool.last_metrics(str(tmp_path / 'work' / 'tiny' / 'ade20k-150-semantic'))
    assert '## Table 2' in text and '## Table 3' in text and '## Table 4' not in text
    row3 = next(line for line in text.splitlines()
                if line.startswith('| tiny |') and f"{pan['coco_panoptic/PQ']:.2f}" in line)
    assert row3.count('|') == 11  # method + 9 panoptic columns
    assert f"| tiny | {sem['mIoU']:.2f} | - | - | - |" in text
    assert 'python tools/test.py' in text and 'none' in text
    assert tool.main(['nothing', 'none', '--configs-dir', str(configs)]) == 2
