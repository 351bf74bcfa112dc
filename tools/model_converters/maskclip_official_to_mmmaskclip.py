# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Convert the MaskCLIP authors' released checkpoint (detectron2) to mmmaskclip + mmdet.

The authors (https://github.com/mlpc-ucsd/MaskCLIP) release ``model_final.pth``
(the whole detectron2 ``MaskFormer``: proposer, CLIP and RMA layers) and
``mask_proposal_network.pth`` (the proposer only). This tool writes

- ``OUT_DIR/maskclip-official_vit-l-14-336_coco-panoptic_converted.pth``: the
  Relative Mask Attention layers only (``visual_encoder.mask_attention.{5,11,
  17,23}``, ``RelativeMaskAttention(style='official')``), for the MaskCLIP
  configs; CLIP itself loads from open_clip;
- ``OUT_DIR/mask2former_r50_maskclip-official_class-agnostic_converted.pth``:
  the class-agnostic Mask2Former R-50 proposer for mmdet's ``Mask2Former``
  built from ``configs/proposals/mask2former_r50_maskclip-official_class-agnostic.py``
  (its class head ``panoptic_head.cls_embed`` is absent from the source).

Every source key is mapped or skipped for a stated reason (CLIP keys, the loss
weight ``criterion.empty_weight``); any other key is an error. With
``--clip-weights`` (an open_clip state dict, e.g. ``open_clip_pytorch_model.bin``
of ``hf-hub:timm/vit_large_patch14_clip_336.openai``) the skipped CLIP tensors
must equal open_clip's exactly::

    python tools/model_converters/maskclip_official_to_mmmaskclip.py \\
        model_final.pth checkpoints/ --clip-weights open_clip_pytorch_model.bin
"""
import argparse
import os
import os.path as osp
import re
import sys
from collections import OrderedDict, defaultdict
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor

StateDict = Dict[str, Tensor]
RMA_OUT = 'maskclip-official_vit-l-14-336_coco-panoptic_converted.pth'
PROPOSER_OUT = 'mask2former_r50_maskclip-official_class-agnostic_converted.pth'
PROPOSER_CONFIG = 'configs/proposals/mask2former_r50_maskclip-official_class-agnostic.py'
SOURCE_CODE = 'https://github.com/mlpc-ucsd/MaskCLIP'
#: Source keys dropped on purpose: key -> reason.
SKIPPED = {'criterion.empty_weight': 'training loss weight'}
CLIP_REASON = 'CLIP weights (loaded from open_clip)'

_CLIP = re.compile(
    r'maskclip\.visual\.(conv1\.weight|class_embedding|positional_embedding|proj|'
    r'ln_(pre|post)\.(weight|bias)|transformer\.resblocks\.\d+\.(attn\.(in_proj_weight|'
    r'in_proj_bias|out_proj\.(weight|bias))|ln_[12]\.(weight|bias)|'
    r'mlp\.c_(fc|proj)\.(weight|bias)))')
_T = r'maskclip\.visual\.transformer\.'
_RMA_CONV = re.compile(_T + r'conv(?P<conv>[13])_added_params\.(?P<j>\d+)\.(?P<f>weight|bias)')
_RMA_ATTN = re.compile(_T + r'resblocks\.(?P<b>\d+)\.attn\.(?P<p>q_prime_norm|k_prime_proj_weight)'
                       r'_added_params\.(?P<f>weight|bias)')
_RMA_TARGET = {
    '1': 'mask_patch_embed',
    '3': 'refiner.1',
    'q_prime_norm': 'query_proj_m',
    'k_prime_proj_weight': 'key_proj_m'
}


class ConversionError(Exception):
    """A one-line, user-facing conversion error."""


def _rules() -> List[Tuple[re.Pattern, Callable[[dict], str]]]:
    """detectron2 (Mask2Former) key pattern -> mmdet key, as ``(regex, fn(groups))``.

    detectron2 ResNet: ``stem.conv1[.norm]``, ``res{2..5}.{i}.conv{1,2,3}[.norm]``,
    ``res{s}.0.shortcut[.norm]`` -> mmdet ``conv1/bn1``, ``layer{s-1}.{i}.conv{c}/bn{c}``,
    ``downsample.{0,1}``. Pixel decoder: ``input_proj.{k}`` and ``level_embed[k]`` are both
    ordered res5, res4, res3, as mmdet's ``input_convs`` / ``level_encoding``; encoder
    ``norm1`` follows the deformable attention, ``norm2`` the FFN (mmdet ``norms.0/1``);
    ``adapter_n``/``layer_n`` (the FPN level of res{n+1}) -> ``lateral_convs``/``output_convs``
    ``.{n-1}`` (mmdet's forward indexes them by input level). Decoder: cross-attention,
    self-attention and FFN layers, a post-norm each -> mmdet ``norms.0/1/2`` in that order.
    Targets are ``fn(groups)`` or a format string of the named groups.
    """
    bn = r'(?P<f>weight|bias|running_mean|running_var|num_batches_tracked)'
    wb = r'(?P<f>weight|bias)'
    pd, pdt = r'sem_seg_head\.pixel_decoder\.', 'panoptic_head.pixel_decoder.'
    enc = pd + r'transformer\.encoder\.layers\.(?P<i>\d+)\.'
    pr, prt = r'sem_seg_head\.predictor\.', 'panoptic_head.'
    dec = 'panoptic_head.transformer_decoder.layers.{i}.'
    mha = r'(?P<p>in_proj_weight|in_proj_bias|out_proj\.weight|out_proj\.bias)'
    res = r'backbone\.res(?P<s>[2-5])\.(?P<i>\d+)\.'
    layer = 'backbone.layer{s}.{i}.'
    fpn = {'adapter': 'lateral_convs', 'layer': 'output_convs'}
    rules = [
        (r'backbone\.stem\.conv1\.weight', 'backbone.conv1.weight'),
        (r'backbone\.stem\.conv1\.norm\.' + bn, 'backbone.bn1.{f}'),
        (res + r'conv(?P<c>[123])\.weight', layer + 'conv{c}.weight'),
        (res + r'conv(?P<c>[123])\.norm\.' + bn, layer + 'bn{c}.{f}'),
        (res + r'shortcut\.weight', layer + 'downsample.0.weight'),
        (res + r'shortcut\.norm\.' + bn, layer + 'downsample.1.{f}'),
        (pd + r'input_proj\.(?P<k>\d+)\.0\.' + wb, pdt + 'input_convs.{k}.conv.{f}'),
        (pd + r'input_proj\.(?P<k>\d+)\.1\.' + wb, pdt + 'input_convs.{k}.gn.{f}'),
        (pd + r'transformer\.level_embed', pdt + 'level_encoding.weight'),
        (enc + r'self_attn\.(?P<m>sampling_offsets|attention_weights|value_proj|output_proj)\.' +
         wb, pdt + 'encoder.layers.{i}.self_attn.{m}.{f}'),
        (enc + r'norm1\.' + wb, pdt + 'encoder.layers.{i}.norms.0.{f}'),
        (enc + r'norm2\.' + wb, pdt + 'encoder.layers.{i}.norms.1.{f}'),
        (enc + r'linear1\.' + wb, pdt + 'encoder.layers.{i}.ffn.layers.0.0.{f}'),
        (enc + r'linear2\.' + wb, pdt + 'encoder.layers.{i}.ffn.layers.1.{f}'),
        (pd + r'mask_features\.' + wb, pdt + 'mask_feature.{f}'),
        (pd + r'(?P<t>adapter|layer)_(?P<n>[1-9])\.' + wb,
         lambda g: f"{pdt}{fpn[g['t']]}.{int(g['n']) - 1}.conv.{g['f']}"),
        (pd + r'(?P<t>adapter|layer)_(?P<n>[1-9])\.norm\.' + wb,
         lambda g: f"{pdt}{fpn[g['t']]}.{int(g['n']) - 1}.gn.{g['f']}"),
        (pr + r'transformer_cross_attention_layers\.(?P<i>\d+)\.multihead_attn\.' + mha,
         dec + 'cross_attn.attn.{p}'),
        (pr + r'transformer_cross_attention_layers\.(?P<i>\d+)\.norm\.' + wb, dec + 'norms.0.{f}'),
        (pr + r'transformer_self_attention_layers\.(?P<i>\d+)\.self_attn\.' + mha,
         dec + 'self_attn.attn.{p}'),
        (pr + r'transformer_self_attention_layers\.(?P<i>\d+)\.norm\.' + wb, dec + 'norms.1.{f}'),
        (pr + r'transformer_ffn_layers\.(?P<i>\d+)\.linear1\.' + wb, dec + 'ffn.layers.0.0.{f}'),
        (pr + r'transformer_ffn_layers\.(?P<i>\d+)\.linear2\.' + wb, dec + 'ffn.layers.1.{f}'),
        (pr + r'transformer_ffn_layers\.(?P<i>\d+)\.norm\.' + wb, dec + 'norms.2.{f}'),
        (pr + r'decoder_norm\.' + wb, prt + 'transformer_decoder.post_norm.{f}'),
        (pr + r'(?P<m>query_feat|query_embed|level_embed)\.weight', prt + '{m}.weight'),
        (pr + r'mask_embed\.layers\.(?P<i>[0-2])\.' + wb,
         lambda g: f"{prt}mask_embed.{2 * int(g['i'])}.{g['f']}"),  # Linear, ReLU, ...
        (pr + r'class_embed\.' + wb, prt + 'cls_embed.{f}'),
    ]
    return [(re.compile(pattern), _formatter(target) if isinstance(target, str) else target)
            for pattern, target in rules]


def _formatter(template: str) -> Callable[[dict], str]:
    """``template.format(**groups)``; detectron2 stage ``res{s}`` is mmdet ``layer{s-1}``."""

    def fmt(groups: dict) -> str:
        if groups.get('s') is not None:
            groups = dict(groups, s=int(groups['s']) - 1)
        return template.format(**groups)

    return fmt


PROPOSER_RULES = _rules()


def _name_keys(keys: List[str], limit: int = 8) -> str:
    keys = sorted(keys)
    more = f' (+{len(keys) - limit} more)' if len(keys) > limit else ''
    return ', '.join(keys[:limit]) + more


def load_state_dict(path: str) -> Tuple[StateDict, str]:
    """Read a checkpoint (``weights_only``) and return its state dict and layout.

    Args:
        path (str): detectron2 ``{'model': sd}``, ``{'state_dict': sd}`` or a bare ``sd``.

    Returns:
        tuple[dict[str, Tensor], str]: the state dict and ``'detectron2'``,
        ``'state_dict'`` or ``'bare'``.
    """
    if not osp.isfile(path):
        raise ConversionError(f'No such file: {path}')
    try:
        obj = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err:  # pickle/zip errors: not a (safe) checkpoint
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConversionError(f'{path} is not a readable PyTorch checkpoint '
                              f'(torch.load(weights_only=True): {first})') from None
    if not isinstance(obj, dict):
        raise ConversionError(f'{path} is not a checkpoint: it holds a {type(obj).__name__}')
    if isinstance(obj.get('model'), dict):
        layout, state = 'detectron2', obj['model']
    elif isinstance(obj.get('state_dict'), dict):
        layout, state = 'state_dict', obj['state_dict']
    elif obj and all(isinstance(v, Tensor) for v in obj.values()):
        layout, state = 'bare', obj
    else:
        raise ConversionError(
            f'Unrecognised checkpoint layout in {path}: top-level keys {_name_keys(list(obj))}; '
            "expected {'model': state_dict} (detectron2), {'state_dict': ...} or a state dict")
    bad = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if bad:
        raise ConversionError(f'Non-tensor entries in the state dict of {path}: {_name_keys(bad)}')
    if state and all(k.startswith('module.') for k in state):
        state = {k[len('module.'):]: v for k, v in state.items()}
    return dict(state), layout


def convert_rma(source: StateDict) -> StateDict:
    """The authors' RMA parameters -> ``visual_encoder.mask_attention.{b}.*``.

    ``conv{1,3}_added_params.{j}`` belong to block ``6 j + 5`` (the authors index them by
    ``block // 6``); every RMA block must have its f2 and f_r convolutions and its
    ``q_prime_norm``/``k_prime_proj_weight`` pair, and vice versa.
    """
    out, conv_idx, attn_blocks = OrderedDict(), defaultdict(set), defaultdict(set)
    for key in sorted(source):
        m = _RMA_CONV.fullmatch(key) or _RMA_ATTN.fullmatch(key)
        if m is None:
            continue
        g = m.groupdict()
        if 'conv' in g:
            block = 6 * int(g['j']) + 5
            conv_idx[block].add(f"conv{g['conv']}.{g['f']}")
            name = _RMA_TARGET[g['conv']]
        else:
            block = int(g['b'])
            attn_blocks[block].add(f"{g['p']}.{g['f']}")
            name = _RMA_TARGET[g['p']]
        out[f'visual_encoder.mask_attention.{block}.{name}.{g["f"]}'] = source[key]
    if not out:
        return out
    wrong = sorted(b for b in attn_blocks if b % 6 != 5)
    if wrong:
        raise ConversionError(f'RMA parameters in blocks {wrong}; the authors\' layout has them '
                              'only in blocks 6j+5 (j = index of conv1/conv3_added_params)')
    full_conv = {f'conv{c}.{f}' for c in '13' for f in ('weight', 'bias')}
    full_attn = {
        f'{p}.{f}'
        for p in ('q_prime_norm', 'k_prime_proj_weight')
        for f in ('weight', 'bias')
    }
    problems = []
    for block in sorted(set(conv_idx) | set(attn_blocks)):
        lack = sorted(full_conv - conv_idx[block]) + sorted(full_attn - attn_blocks[block])
        if lack:
            problems.append(f'block {block} (conv index {block // 6}) lacks {", ".join(lack)}')
    if problems:
        raise ConversionError('Incomplete RMA parameters: ' + '; '.join(problems))
    return out


def convert_proposer(source: StateDict) -> Tuple[StateDict, int]:
    """detectron2 Mask2Former keys -> mmdet ``Mask2Former`` keys.

    Returns:
        tuple[dict, int]: the mmdet state dict (with a zero ``num_batches_tracked`` added
        to every BatchNorm that lacks one: detectron2's FrozenBN has none) and the number
        of added ``num_batches_tracked`` entries.
    """
    out = OrderedDict()
    for key in sorted(source):
        for pattern, target in PROPOSER_RULES:
            m = pattern.fullmatch(key)
            if m:
                out[target(m.groupdict())] = source[key]
                break
    cls_w = out.get('panoptic_head.cls_embed.weight')
    queries = out.get('panoptic_head.query_feat.weight')
    if cls_w is not None and (cls_w.dim() != 2 or cls_w.shape[0] != 2 or
                              (queries is not None and cls_w.shape[1] != queries.shape[1])):
        raise ConversionError(
            f'sem_seg_head.predictor.class_embed has shape {tuple(cls_w.shape)}; the '
            f'class-agnostic proposer ({PROPOSER_CONFIG}) has cls_embed (2, hidden): '
            'object, no-object')
    added = 0
    for key in [k for k in out if k.startswith('backbone.') and k.endswith('.running_mean')]:
        nbt = key[:-len('running_mean')] + 'num_batches_tracked'
        if nbt not in out:
            out[nbt] = torch.tensor(0, dtype=torch.long)
            added += 1
    return out, added


def is_proposer_key(key: str) -> bool:
    """Whether a source key matches one of the proposer rules."""
    return any(p.fullmatch(key) for p, _ in PROPOSER_RULES)


def load_clip_weights(path: str) -> StateDict:
    """An open_clip state dict (``visual.*`` keys), ``.bin``/``.pt`` or ``.safetensors``."""
    if not osp.isfile(path):
        raise ConversionError(f'No such file: {path}')
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        try:
            return load_file(path)
        except Exception as err:
            raise ConversionError(f'{path} is not a readable safetensors file: {err}') from None
    state, _ = load_state_dict(path)
    return state


def check_clip(source: StateDict, clip_keys: List[str], path: str) -> None:
    """Each ``maskclip.visual.<k>`` must equal open_clip's ``visual.<k>`` exactly."""
    ref = load_clip_weights(path)
    missing = [k for k in clip_keys if 'visual.' + k[len('maskclip.visual.'):] not in ref]
    if missing:
        raise ConversionError(f'{len(missing)} CLIP keys have no visual.* counterpart in '
                              f'{path}: {_name_keys(missing)}')
    differ = []
    for key in clip_keys:
        a, b = source[key], ref['visual.' + key[len('maskclip.visual.'):]]
        if a.shape != b.shape or not torch.equal(a.double(), b.double()):
            differ.append(key)
    if differ:
        raise ConversionError(f'{len(differ)} CLIP tensors differ from {path}: '
                              f'{_name_keys(differ)}')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Convert MaskCLIP's released detectron2 checkpoint (model_final.pth or "
        'mask_proposal_network.pth) to an mmmaskclip RMA checkpoint and an mmdet '
        'Mask2Former proposer checkpoint')
    parser.add_argument('src', help='model_final.pth or mask_proposal_network.pth')
    parser.add_argument('out_dir', help='output folder')
    parser.add_argument(
        '--clip-weights',
        help='open_clip state dict (visual.* keys) that the CLIP keys of the '
        'source must equal, e.g. open_clip_pytorch_model.bin of '
        'hf-hub:timm/vit_large_patch14_clip_336.openai')
    parser.add_argument('--force', action='store_true', help='overwrite existing outputs')
    return parser.parse_args(argv)


def convert(args: argparse.Namespace) -> List[str]:
    """Run the conversion; returns the summary lines."""
    source, layout = load_state_dict(args.src)
    clip_keys = [k for k in source if _CLIP.fullmatch(k)]
    rma = convert_rma(source)
    rma_keys = {k for k in source if _RMA_CONV.fullmatch(k) or _RMA_ATTN.fullmatch(k)}
    prop_src = {k: v for k, v in source.items() if is_proposer_key(k)}
    skipped = [k for k in source if k in SKIPPED]
    unknown = set(source) - set(clip_keys) - rma_keys - set(prop_src) - set(skipped)
    if unknown:
        raise ConversionError(f'{len(unknown)} source keys are neither mapped nor known to '
                              f'be skippable: {_name_keys(list(unknown))}')
    if not rma and not prop_src:
        raise ConversionError(f'Unrecognised checkpoint layout in {args.src}: no MaskCLIP RMA '
                              'keys (maskclip.visual.*added_params*) and no Mask2Former keys '
                              '(backbone.*, sem_seg_head.*)')
    proposer, num_added = convert_proposer(prop_src) if prop_src else ({}, 0)
    outputs = [(osp.join(args.out_dir, name), sd)
               for name, sd in ((RMA_OUT, rma), (PROPOSER_OUT, proposer)) if sd]
    exist = [p for p, _ in outputs if osp.exists(p)]
    if exist and not args.force:
        raise ConversionError(f'Output exists: {", ".join(exist)}; pass --force to overwrite')
    if clip_keys and args.clip_weights:
        check_clip(source, clip_keys, args.clip_weights)
        clip_note = f'equal to {args.clip_weights}'
    elif clip_keys:
        clip_note = 'not checked against open_clip: no --clip-weights'
    else:
        clip_note = None
    meta = dict(
        converted_from=osp.basename(args.src),
        source_layout=layout,
        source_code=SOURCE_CODE,
        converter=osp.join('tools', 'model_converters', osp.basename(__file__)))
    os.makedirs(args.out_dir, exist_ok=True)
    lines = [f'{args.src} ({layout} layout, {len(source)} keys):']
    for path, state in outputs:
        if state is rma:
            blocks = sorted({int(k.split('.')[2]) for k in rma})
            extra = dict(
                rma_blocks=blocks,
                clip_check=clip_note or 'no CLIP keys',
                layer_cfg="RelativeMaskAttention(style='official')")
            what = f'{len(rma)} RMA tensors (blocks {", ".join(map(str, blocks))})'
        else:
            extra = dict(
                config=PROPOSER_CONFIG,
                absent='panoptic_head.cls_embed'
                if 'panoptic_head.cls_embed.weight' not in proposer else '')
            what = (f'{len(proposer) - num_added} Mask2Former tensors '
                    f'(+{num_added} zero num_batches_tracked)')
        torch.save({'meta': dict(meta, **extra), 'state_dict': state}, path)
        lines.append(f'{what} -> {path}')
    if clip_keys:
        lines.append(f'skipped {len(clip_keys)} {CLIP_REASON}; {clip_note}')
    for key in skipped:
        lines.append(f'skipped {key} ({SKIPPED[key]})')
    return lines


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        lines = convert(args)
    except ConversionError as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    print('\n'.join(lines))
    return 0


if __name__ == '__main__':
    sys.exit(main())
