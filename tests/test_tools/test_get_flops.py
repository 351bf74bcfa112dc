# Copyright (c) mmmaskclip contributors. All rights reserved.
"""tools/analysis_tools/get_flops.py: every row of the FLOPs table of a tiny
MaskCLIP (random weights) against analytic counts, and the pipeline row
against one counted run of the whole ``MaskCLIP.predict``."""
import json
import os.path as osp

import pytest
import torch
from conftest import REPO, load_script, tiny_clip_cfg
from mmengine.config import Config
from tiny_maskclip import shrink_mask2former

from mmmaskclip.utils.flop_count import count_flops, vit_image_macs

RMA = dict(type='RelativeMaskAttention', style='paper', chunk_size=4)
M2F = 'configs/proposals/mask2former_r50_8xb2-lsj-50e_coco-panoptic_class-agnostic.py'
#: the tiny CLIP of the test suite: patch 16, width 64, 3 blocks, embed 32
PATCH, WIDTH, LAYERS, EMBED = 16, 64, 3, 32


@pytest.fixture(scope='module')
def tool():
    return load_script('tools/analysis_tools/get_flops.py')


def tiny_config(rma_blocks=(1, )) -> Config:
    """A MaskCLIP config: tiny CLIP, shrunken Mask2Former (8 queries)."""
    detector = Config.fromfile(osp.join(REPO, M2F)).model
    shrink_mask2former(detector)
    model = dict(
        type='MaskCLIP',
        data_preprocessor=dict(
            type='DetDataPreprocessor', mean=None, std=None, bgr_to_rgb=True, pad_size_divisor=32),
        clip=dict(model_cfg=tiny_clip_cfg()),
        proposer=dict(type='DetectorProposer', detector=detector),
        visual_encoder=dict(
            type='MaskCLIPVisualEncoder', mask_attention_overrides=dict.fromkeys(rma_blocks, RMA)),
        text_encoder=dict(type='MaskCLIPTextEncoder'),
        head=None,
        num_things_classes=2)
    return Config(dict(model=model))


def macs(size: int, masks: int = 0) -> int:
    return vit_image_macs((size, size), PATCH, WIDTH, LAYERS, EMBED, num_masks=masks)


@pytest.fixture(scope='module')
def table(tool, tmp_path_factory):
    """The tool's JSON for size 70 (encoder 80: a patch multiple)."""
    folder = tmp_path_factory.mktemp('flops')
    config = folder / 'tiny.py'
    tiny_config().dump(str(config))
    out = folder / 'flops.json'
    assert tool.main([
        '--config',
        str(config), '--sizes', '70', '--num-masks', '2', '8', '--num-classes', '5', '--out',
        str(folder / 'flops.md'), '--json',
        str(out)
    ]) == 0
    result = json.loads(out.read_text())
    return {int(s): {r['key']: r for r in rows} for s, rows in result.items()}, folder


def flops(row: dict, masks: int) -> int:
    return row['flops'][str(masks)]['flops']


def test_clip_and_baseline_rows(table):
    rows = table[0][70]
    clip = rows['clip']
    assert clip['input_desc'] == '80²'  # 70 rounded up to the patch
    assert flops(clip, 2) == flops(clip, 8) == 2 * macs(80)
    assert clip['trainable'] == 0 and clip['how'] == 'fake tensors'
    baseline = rows['clip-baseline']
    assert (flops(baseline, 2), flops(baseline, 8)) == (4 * macs(80), 16 * macs(80))
    assert baseline['how'] == 'one pass × M, fake tensors'
    # CLIPBaselineEncoder's default: each masked image at the CLIP's own 64
    assert flops(rows['clip-baseline-clip-size'], 8) == 16 * macs(64)


def test_no_second_baseline_row_at_the_clip_size(tool, tmp_path):
    config = tmp_path / 'tiny.py'
    tiny_config().dump(str(config))
    out = tmp_path / 'flops.json'
    assert tool.main([
        '--config',
        str(config), '--sizes', '64', '--rows', 'clip-baseline', '--num-masks', '3', '--json',
        str(out)
    ]) == 0
    (row, ) = json.loads(out.read_text())['64']
    assert row['key'] == 'clip-baseline' and flops(row, 3) == 6 * macs(64)


def test_mask_tokens_cost_exactly_their_formula(table):
    """MaskCLIP w/o RMA = plain CLIP + per block ``10 M W^2 + 2 M L W`` MACs
    (query projection W^2, out-projection W^2, MLP 8 W^2 per mask token;
    attention over the L = N + 1 CLIP tokens) + ``M W E`` (projection)."""
    rows, enc = table[0][70], 80
    length = (enc // PATCH)**2 + 1
    for m in (2, 8):
        extra = LAYERS * (10 * m * WIDTH**2 + 2 * m * length * WIDTH) + m * WIDTH * EMBED
        wo_rma = flops(rows['maskclip-wo-rma'], m)
        assert wo_rma - flops(rows['clip'], m) == 2 * extra == 2 * (macs(enc, m) - macs(enc))
        assert rows['maskclip-wo-rma']['trainable'] == 0


def test_rma_rows(table):
    rows = table[0][70]
    for style in ('official', 'paper'):
        row = rows[f'maskclip-rma-{style}']
        assert row['label'].endswith('(blocks 2)')
        assert row['trainable'] > 0 and row['params'] > rows['maskclip-wo-rma']['params']
        for m in (2, 8):
            assert flops(row, m) > flops(rows['maskclip-wo-rma'], m)
    assert rows['proposer']['label'] == 'proposer (detector, 8 queries)'
    assert rows['proposer']['input_desc'] == '70² padded to 96²'
    assert rows['proposer']['how'].startswith('real CPU run (fake tensors failed')


def test_markdown(table):
    text = (table[1] / 'flops.md').read_text()
    assert '## Input 70 × 70' in text and '| GFLOPs M=8 | × CLIP |' in text
    line = next(li for li in text.splitlines() if li.startswith('| CLIP baseline: M masked'))
    assert '| 8.00 |' in line  # 8 passes of the plain CLIP row


def _full_predict_flops(tool, cfg: Config, size: int, num_classes: int) -> int:
    """One counted ``predict`` of the whole model, configured as the tool
    configures its pipeline (random weights, squashed to the encoder size)."""
    from mmdet.registry import MODELS
    setup = tool.make_setup(cfg, fake=False)
    names = [f'class {i}' for i in range(num_classes)]
    model = MODELS.build(
        dict(
            setup.model,
            class_names=names,
            num_things_classes=2,
            encoder_input_size=(setup.encoder_size(size), ) * 2)).eval()
    inputs, samples = tool.make_batch(setup, size)
    with torch.no_grad():
        model.predict(inputs, samples)  # fills the text-embedding cache
        return count_flops(model.predict, inputs, samples).flops


def test_pipeline_is_the_whole_predict(tool, table):
    """With M = the proposer's 8 queries, the pipeline row (proposer +
    encoder + head, counted apart) equals one counted run of predict."""
    size = 70
    row = table[0][size]['pipeline']
    expected = _full_predict_flops(tool, tiny_config(), size, num_classes=5)
    assert flops(row, 8) == expected
    parts = table[0][size]
    encoder = flops(parts['maskclip-rma-paper'], 8)  # the config's encoder
    assert flops(parts['proposer'], 8) + encoder < expected  # + logits, post-processing
    assert row['trainable'] == parts['maskclip-rma-paper']['trainable']


def test_fake_and_real_counts_agree(tool):
    """Every encoder row counted on fake tensors equals a real CPU run."""
    cfg = tiny_config(rma_blocks=(0, 2))
    rows = ['clip', 'maskclip-wo-rma', 'maskclip-rma-official', 'maskclip-rma-paper']
    counts = {}
    for fake in (True, False):
        setup = tool.make_setup(cfg, fake=fake)
        args = tool.parse_args(['--rows', *rows, '--num-masks', '3', '9'])
        counts[fake] = {
            r.key: {
                m: c.flops
                for m, c in r.flops.items()
            }
            for r in tool.count_size(setup, 64, args, {})
        }
    assert counts[True] == counts[False]


@pytest.mark.parametrize('depth,blocks', [(24, [5, 11, 17, 23]), (12, [2, 5, 8, 11]),
                                          (3, [0, 1, 2])])
def test_rma_blocks_scale_to_depth(tool, depth, blocks):
    setup = tool.Setup(
        dict(visual_encoder=dict(mask_attention_overrides={
            5: RMA,
            11: RMA,
            17: RMA,
            23: RMA
        })), 14, depth, 336, 768, 32)
    assert tool.rma_blocks(setup) == blocks


def test_config_rma_blocks_follow_the_clip_depth(tool):
    """The pipeline's encoder is the config's, its RMA blocks scaled to a
    shallower CLIP (ViT-L's 6/12/18/24 -> ViT-B's 3/6/9/12, 1-based)."""
    official = dict(RMA, style='official')
    setup = tool.Setup(
        dict(
            visual_encoder=dict(
                type='MaskCLIPVisualEncoder',
                mask_attention_overrides={
                    23: RMA,
                    5: official,
                    11: RMA,
                    17: RMA
                })), 16, 12, 224, 512, 32)
    cfg = tool.variant_encoder(setup, 'config')
    assert cfg['mask_attention_overrides'] == {2: official, 5: RMA, 8: RMA, 11: RMA}
    paper = tool.variant_encoder(setup, 'paper')['mask_attention_overrides']
    assert paper == dict.fromkeys([2, 5, 8, 11], dict(RMA, style='paper'))
    assert 'mask_attention_overrides' not in tool.variant_encoder(setup, None)


def test_bad_command_lines(tool, tmp_path, capsys):
    assert tool.main(['--config', str(tmp_path / 'missing.py')]) == 2
    assert capsys.readouterr().err.strip() == \
        f'get_flops.py: error: config file not found: {tmp_path / "missing.py"}'
    assert tool.main(['--num-masks', '0']) == 2
    assert '--num-masks must be positive' in capsys.readouterr().err
