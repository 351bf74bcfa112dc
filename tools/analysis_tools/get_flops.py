# Copyright (c) mmmaskclip contributors. All rights reserved.
"""FLOPs and parameters of CLIP, the CLIP baseline, MaskCLIP and the whole pipeline (Table 6).

A markdown table per input size ``S`` (``--sizes``), a GFLOPs column and its
ratio to plain CLIP per mask count ``M`` (``--num-masks``). Rows: ``clip``
(open_clip ``encode_image`` at the encoder size ``S'``, ``S`` rounded up to
a multiple of the patch: 640 -> 644); ``clip-baseline`` (Algorithm 1: one
CLIP pass per masked image, counted once, times ``M``; at ``S'`` and at the
CLIP's own size, to which ``CLIPBaselineEncoder`` resizes by default);
``maskclip-wo-rma``, ``-rma-official``, ``-rma-paper`` (the config's visual
encoder without RMA / with RMA of each style in the config's RMA blocks,
scaled to the CLIP's depth); ``proposer`` (on the image padded to the data
preprocessor's size divisor); ``pipeline`` (proposer + the config's encoder
+ the rest of ``MaskCLIP.predict``: class logits, post-processing at
``S x S`` for ``--num-classes`` names; text embeddings are cached per
vocabulary, so not a per-image cost).

FLOPs = 2 x MACs of matrix products, convolutions, attention (dense) and grid
sampling; element-wise ops count zero (``mmmaskclip/utils/flop_count.py``).
Weights are random (weights change no FLOP). Counts run on fake tensors
(shapes only; boolean value checks answered true, listed in ``counted``) or,
where code needs values, as a real CPU run. Parameters: total and trainable.

Examples::

    python tools/analysis_tools/get_flops.py
    python tools/analysis_tools/get_flops.py --sizes 640 --num-masks 100 \\
        --out work_dirs/flops.md --json work_dirs/flops.json
    python tools/analysis_tools/get_flops.py \\
        --config configs/maskclip/official/maskclip-official_vit-l-14-336_ade20k-150.py \\
        --rows clip maskclip-rma-official proposer pipeline
    python tools/analysis_tools/get_flops.py --cfg-options model.clip.name=ViT-B-16 \\
        --sizes 224 --num-masks 100
"""
import argparse
import copy
import importlib.util
import json
import math
import os
import os.path as osp
import sys
from dataclasses import asdict, dataclass, field, replace
from typing import Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.config import DictAction

REPO = osp.dirname(osp.dirname(osp.dirname(osp.realpath(__file__))))
DEFAULT_CONFIG = osp.join(REPO, 'configs', '_base_', 'models', 'maskclip_vit-l-14-336.py')
ROWS = ('clip', 'clip-baseline', 'maskclip-wo-rma', 'maskclip-rma-official', 'maskclip-rma-paper',
        'proposer', 'pipeline')
#: The paper's RMA blocks (0-based) of its 24-block ViT-L/14.
PAPER_RMA_BLOCKS, PAPER_DEPTH = (5, 11, 17, 23), 24


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        epilog='Examples: see the top of this file.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--config', default=DEFAULT_CONFIG, help='MaskCLIP config (its model)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, help='e.g. model.clip.name=ViT-B-16')
    parser.add_argument('--sizes', type=int, nargs='+', default=[336, 640], help='input sizes S')
    parser.add_argument(
        '--num-masks', type=int, nargs='+', default=[10, 50, 100, 200], help='mask counts M')
    parser.add_argument('--rows', nargs='+', choices=ROWS, default=list(ROWS), help='what to count')
    parser.add_argument(
        '--num-classes', type=int, default=150, help='vocabulary size of the pipeline row')
    parser.add_argument('--real', action='store_true', help='count real CPU runs only (slow)')
    parser.add_argument('--out', default=None, help='also write the markdown here')
    parser.add_argument('--json', default=None, help='write every count (FLOPs per op) here')
    return parser.parse_args(argv)


def check_args(args: argparse.Namespace) -> Optional[str]:
    """A one-line message for a bad command line, else None."""
    if not osp.isfile(args.config):
        return f'config file not found: {args.config}'
    for option, values in (('--sizes', args.sizes), ('--num-masks', args.num_masks),
                           ('--num-classes', [args.num_classes])):
        if min(values) < 1:
            return f'{option} must be positive, got {values}'
    return None


def import_mmmaskclip() -> None:
    """Import mmmaskclip, from this checkout if it is not installed."""
    spec = importlib.util.spec_from_file_location('_tool_common',
                                                  osp.join(REPO, 'tools', 'tool_common.py'))
    spec.loader.exec_module(module := importlib.util.module_from_spec(spec))
    module.import_mmmaskclip(__file__)


@dataclass
class Setup:
    """The config's model (random weights) and what the counts need of it."""
    model: dict
    patch: int
    depth: int
    clip_size: int
    embed_dim: int
    pad_divisor: int
    text_params: int = 0
    fake: bool = True

    def encoder_size(self, size: int) -> int:
        """``size`` rounded up to a multiple of the patch."""
        return math.ceil(size / self.patch) * self.patch

    def batch_size(self, size: int) -> int:
        """``size`` padded to the data preprocessor's size divisor."""
        return math.ceil(size / self.pad_divisor) * self.pad_divisor


def make_setup(cfg, fake: bool = True) -> Setup:
    """The config's model with random weights (no CLIP tag or file, no
    proposer checkpoint) and the facts of its CLIP."""
    from mmengine.registry import init_default_scope

    from mmmaskclip.models.clip_loader import build_clip_model
    from mmmaskclip.utils.flop_count import count_params, fake_tensor_mode
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    model = copy.deepcopy(cfg.model)  # a ConfigDict: mmdet's detectors need them
    if isinstance(model.get('clip'), dict):
        model.clip.pretrained = None
    if isinstance(model.get('proposer'), dict) and 'checkpoint' in model.proposer:
        model.proposer.checkpoint = None
    with fake_tensor_mode():
        clip = build_clip_model(model.clip)
    visual = clip.visual
    text_params = count_params(clip)[0] - count_params(visual)[0]
    divisor = (model.get('data_preprocessor') or {}).get('pad_size_divisor') or 1
    return Setup(model, visual.patch_size[0], len(visual.transformer.resblocks),
                 visual.image_size[0], visual.output_dim, divisor, text_params, fake)


def clip_cfg(setup: Setup, size: Optional[int]):
    """The config's CLIP, built at ``size`` (None: its own size)."""
    clip = copy.deepcopy(setup.model.clip)
    if size is not None and isinstance(clip, dict) and 'model_cfg' in clip:
        clip.model_cfg.setdefault('vision_cfg', {})['image_size'] = size
    elif size is not None and isinstance(clip, dict):
        clip.force_image_size = size
    return clip


def rma_blocks(setup: Setup) -> List[int]:
    """0-based RMA blocks: the config's, else the paper's, scaled to the
    CLIP's depth where they do not fit (ViT-B: 3/6/9/12, 1-based)."""
    overrides = setup.model.get('visual_encoder', {}).get('mask_attention_overrides') or {}
    blocks = sorted(int(b) for b in overrides) or list(PAPER_RMA_BLOCKS)
    if max(blocks) < setup.depth:
        return blocks
    ref = max(PAPER_DEPTH, max(blocks) + 1)
    return sorted({max(round((b + 1) * setup.depth / ref), 1) - 1 for b in blocks})


def variant_encoder(setup: Setup, style: Optional[str]) -> dict:
    """The config's visual encoder without RMA (``style`` None), with RMA of
    ``style`` in :func:`rma_blocks` (the config's other RMA settings), or as
    configured (``'config'``, its RMA blocks scaled to the CLIP's depth)."""
    cfg = copy.deepcopy(setup.model.get('visual_encoder', dict(type='MaskCLIPVisualEncoder')))
    overrides = cfg.pop('mask_attention_overrides', None) or {}
    layers = [dict(v) for _, v in sorted(overrides.items(), key=lambda kv: int(kv[0]))]
    if style == 'config' and layers:
        cfg['mask_attention_overrides'] = dict(zip(rma_blocks(setup), layers))
    elif style not in (None, 'config'):
        rma = next((v for v in layers if v.get('type') == 'RelativeMaskAttention'),
                   dict(type='RelativeMaskAttention'))
        cfg['mask_attention_overrides'] = {b: dict(rma, style=style) for b in rma_blocks(setup)}
    return cfg


@dataclass
class Counted:
    """A row: FLOPs per mask count (``None``: one pass), parameters, how."""
    key: str
    label: str
    input_desc: str
    params: int
    trainable: int
    flops: Dict[Optional[int], object] = field(default_factory=dict)  # M -> FlopCount
    how: str = ''

    def per_mask_count(self, masks: List[int], times: bool = False, **changes) -> 'Counted':
        """The one-pass count for every ``M`` (times ``M`` if ``times``)."""
        flops = {m: self.flops[None] * (m if times else 1) for m in masks}
        return replace(self, flops=flops, **changes)


def how_counted(count) -> str:
    """'fake tensors' or 'real CPU run', with the count's note."""
    how = 'fake tensors' if count.mode == 'fake' else 'real CPU run'
    return how + (f' ({count.note})' if count.note else '')


def _count(setup: Setup, label: str, desc: str, build, run, inputs=(None, ), part=None) -> Counted:
    """Count ``run(obj, x)`` for each ``x`` of ``inputs`` (``obj = build()``),
    and the parameters of ``part(obj)`` (default: ``obj``)."""
    from mmmaskclip.utils.flop_count import count_flops_auto, count_params
    counts, obj = count_flops_auto(build, run, inputs, use_fake=setup.fake)
    params = count_params(part(obj) if part else obj)
    return Counted('', label, desc, *params, dict(zip(inputs, counts)), how_counted(counts[0]))


def count_clip(setup: Setup, size: Optional[int]) -> Counted:
    """Plain CLIP's image forward at ``size`` (None: the CLIP's own size)."""
    from mmmaskclip.models.clip_loader import build_clip_model
    size = size or setup.clip_size
    return replace(
        _count(
            setup,
            'plain CLIP image forward (open_clip encode_image)',
            f'{size}²',
            lambda: build_clip_model(clip_cfg(setup, size)).requires_grad_(False),
            lambda model, _: model.encode_image(torch.randn(1, 3, size, size)),
            part=lambda model: model.visual),
        key='clip')


def count_encoder(setup: Setup, enc_cfg: dict, size: int, masks: List[int]) -> Counted:
    """A MaskCLIP visual encoder, ``M`` masks at ``size x size``."""
    from mmmaskclip.models.clip_loader import build_clip_model, with_clip
    return _count(
        setup, 'MaskCLIP', f'{size}²',
        lambda: MODELS.build(with_clip(enc_cfg, build_clip_model(clip_cfg(setup, None)))).eval(),
        lambda enc, num: enc(torch.randn(1, 3, size, size), torch.randn(1, num, size, size)), masks)


def make_batch(setup: Setup, size: int):
    """An ``S x S`` RGB 0-255 image, padded as the data preprocessor pads,
    and its sample."""
    padded = (setup.batch_size(size), ) * 2
    meta = dict(
        img_shape=(size, size),
        ori_shape=(size, size),
        pad_shape=padded,
        batch_input_shape=padded,
        scale_factor=(1.0, 1.0))
    return torch.rand(1, 3, *padded) * 255, [DetDataSample(metainfo=meta)]


def count_proposer(setup: Setup, size: int) -> Counted:
    """The config's proposer on one padded ``S x S`` image."""
    from mmmaskclip.models.proposers import DetectorProposer
    cfg = setup.model.proposer
    name = cfg.get('detector', cfg.type)
    name = osp.basename(name).replace('.py', '') if isinstance(name, str) else 'detector'
    if 'detector' in cfg:  # a Mask2Former's query count
        head = DetectorProposer.detector_model_cfg(cfg.detector).get('panoptic_head', {})
        name += f", {head['num_queries']} queries" if 'num_queries' in head else ''
    row = _count(setup, f'proposer ({name})', f'{size}² padded to {setup.batch_size(size)}²',
                 lambda: MODELS.build(copy.deepcopy(cfg)).eval(),
                 lambda proposer, _: proposer(*make_batch(setup, size)))
    return replace(row, key='proposer')


class _Fn(nn.Module):
    """A module that calls ``fn`` (with extra attributes ``attrs``)."""

    def __init__(self, fn, **attrs) -> None:
        super().__init__()
        self.fn = fn
        self.__dict__.update(attrs)

    def forward(self, *args):
        return self.fn(*args)


def _stand_ins(setup: Setup, num: int, refines: bool):
    """A proposer, visual and text encoder that only make outputs of the
    right shapes (no FLOPs), for counting what ``predict`` does around them."""
    from mmmaskclip.models.backbones import RegionEncoderOutput
    from mmmaskclip.models.proposers import MaskProposals
    dim = setup.embed_dim

    def propose(images, *args):
        b, _, h, w = images.shape
        return MaskProposals(
            torch.randn(b, num, h // 4, w // 4), torch.ones(b, num, dtype=torch.bool),
            torch.rand(b, num))

    def encode(images, masks, valid):
        embeds = F.normalize(torch.randn(*masks.shape[:2], dim), dim=-1)
        return RegionEncoderOutput(embeds, None, valid, mask_logits=[masks] if refines else [])

    return (_Fn(propose), _Fn(encode, patch_size=(setup.patch, setup.patch)),
            _Fn(lambda names: F.normalize(torch.randn(len(names), dim), dim=-1)))


def count_head(setup: Setup, size: int, masks: List[int], num_classes: int) -> list:
    """FLOPs of ``MaskCLIP.predict`` besides its proposer and encoders (class
    logits, post-processing): real runs with stand-ins for those."""
    import open_clip

    from mmmaskclip.utils.flop_count import count_flops
    tiny = open_clip.CLIP(
        embed_dim=setup.embed_dim,
        vision_cfg=dict(
            image_size=setup.patch, layers=1, width=32, head_width=32, patch_size=setup.patch),
        text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=1, layers=1))
    things = setup.model.get('num_things_classes') or num_classes
    model = MODELS.build(
        dict(
            setup.model,
            clip=tiny,
            proposer=dict(type='GTMaskProposer'),
            visual_encoder=dict(type='MaskCLIPVisualEncoder'),
            head=None,
            class_names=[f'class {i}' for i in range(num_classes)],
            num_things_classes=min(things, num_classes),
            encoder_input_size=(setup.encoder_size(size), ) * 2)).eval()
    refines = bool(setup.model.get('visual_encoder', {}).get('mask_attention_overrides'))
    counts = []
    for num in masks:
        model.proposer, model.visual_encoder, model.text_encoder = _stand_ins(setup, num, refines)
        counts.append(count_flops(model.predict, *make_batch(setup, size)))
    return counts


@torch.no_grad()
def count_size(setup: Setup, size: int, args: argparse.Namespace, cache: dict) -> List[Counted]:
    """Every requested row at input size ``size`` (``cache``: counts shared
    between sizes and rows)."""
    masks, rows, enc, want = args.num_masks, [], setup.encoder_size(size), set(args.rows)
    if want & {'clip', 'clip-baseline'}:
        clip = count_clip(setup, enc)
        rows += [clip.per_mask_count(masks)] if 'clip' in want else []
    label, how = 'CLIP baseline: M masked images, one CLIP pass each', 'one pass × M, '
    if 'clip-baseline' in want:
        rows.append(
            clip.per_mask_count(masks, True, key='clip-baseline', label=label, how=how + clip.how))
    if 'clip-baseline' in want and enc != setup.clip_size:  # CLIPBaselineEncoder's default
        own = cache['clip_own'] = cache.get('clip_own') or count_clip(setup, None)
        label += ', resized to the CLIP size'
        rows.append(
            own.per_mask_count(
                masks, True, key='clip-baseline-clip-size', label=label, how=how + own.how))
    blocks, encoders = '/'.join(str(b + 1) for b in rma_blocks(setup)), {}
    for key, style in (('maskclip-wo-rma', None), ('maskclip-rma-official', 'official'),
                       ('maskclip-rma-paper', 'paper')):
        if key in want:
            cfg = variant_encoder(setup, style)
            label = f'MaskCLIP, RMA {style} (blocks {blocks})' if style else 'MaskCLIP w/o RMA'
            row = replace(count_encoder(setup, cfg, enc, masks), key=key, label=label)
            encoders[json.dumps(cfg, sort_keys=True, default=str)] = row
            rows.append(row)
    if want & {'proposer', 'pipeline'}:
        proposer = count_proposer(setup, size)
        if 'proposer' in want:
            rows.append(proposer.per_mask_count(masks))
    if 'pipeline' in want:
        enc_cfg = variant_encoder(setup, 'config')
        key = json.dumps(enc_cfg, sort_keys=True, default=str)
        encoder = encoders.get(key) or count_encoder(setup, enc_cfg, enc, masks)
        head = count_head(setup, size, masks, args.num_classes)
        flops = {m: proposer.flops[None] + encoder.flops[m] + h for m, h in zip(masks, head)}
        rows.append(
            Counted(
                'pipeline', 'whole pipeline: proposer + config encoder + logits + '
                'post-processing', f'{size}², encoder {enc}²',
                proposer.params + encoder.params + setup.text_params, encoder.trainable, flops,
                f'proposer: {proposer.how}; encoder: {encoder.how}; '
                'logits + post-processing: real CPU run'))
    return rows


def gflops(flops: int) -> str:
    """GFLOPs, one decimal (three significant digits below 1)."""
    value = flops / 1e9
    return f'{value:.1f}' if value >= 1 else f'{value:.3g}'


def markdown(tables: Dict[int, List[Counted]], masks: List[int], config: str) -> str:
    """The tables, one per size, with ratio columns to the plain CLIP row."""
    out = [
        '# FLOPs and parameters', '', f'Config `{config}`, random weights. GFLOPs = 10⁹ FLOPs, '
        'FLOPs = 2 × MACs (matrix products, convolutions, attention, grid sampling; element-'
        'wise ops count zero). × CLIP: ratio to the plain CLIP row of the same table. '
        'Parameters in millions.', ''
    ]
    head = ['variant', 'input', 'params', 'trainable']
    head += [c for m in masks for c in (f'GFLOPs M={m}', '× CLIP')] + ['counted']
    for size, rows in tables.items():
        clip = next((r for r in rows if r.key == 'clip'), None)
        out += [
            f'## Input {size} × {size}', '', '| ' + ' | '.join(head) + ' |',
            '|' + ' --- |' * len(head)
        ]
        for row in rows:
            cells = [
                row.label, row.input_desc, f'{row.params / 1e6:.1f}', f'{row.trainable / 1e6:.2f}'
            ]
            for m in masks:
                flops = row.flops[m].flops
                cells += [gflops(flops), f'{flops / clip.flops[m].flops:.2f}' if clip else '-']
            out.append('| ' + ' | '.join(cells + [row.how]) + ' |')
        out.append('')
    return '\n'.join(out)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    error = check_args(args)
    if error:
        print(f'get_flops.py: error: {error}', file=sys.stderr)
        return 2
    import_mmmaskclip()
    from mmengine.config import Config
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    setup, cache = make_setup(cfg, fake=not args.real), {}
    tables = {size: count_size(setup, size, args, cache) for size in args.sizes}
    text = markdown(tables, args.num_masks, osp.relpath(args.config))
    print(text)
    dump = {s: [asdict(r) for r in rows] for s, rows in tables.items()}
    for path, content in ((args.out, text), (args.json, json.dumps(dump, indent=1))):
        if path:
            os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
            with open(path, 'w') as f:
                f.write(content)
    return 0


if __name__ == '__main__':
    sys.exit(main())
