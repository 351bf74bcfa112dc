# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Synthetic state dicts with the key names and shapes of the MaskCLIP authors'
released checkpoint (detectron2 ``MaskFormer``).

Written from the public module definitions (detectron2 ``ResNet``/``FrozenBatchNorm2d``,
Mask2Former's ``MSDeformAttnPixelDecoder`` and ``MultiScaleMaskedTransformerDecoder``,
OpenAI CLIP's ``VisionTransformer``) and the design notes (§3), not from mmdet, so that
the converter's mapping is checked independently. Values are random and distinct, scaled
so that a forward pass stays well conditioned (norm weights around 1, running variances
in [0.5, 1.5], weights ~ fan_in^-1/2).
"""
from collections import OrderedDict
from typing import Dict, Optional, Sequence

import torch
from torch import Tensor

#: RMA blocks of ViT-L/14 (0-based): conv index j = block // 6.
RMA_BLOCKS = (5, 11, 17, 23)


class _Builder:
    """Adds named random tensors to an ordered state dict."""

    def __init__(self, seed: int, dtype: torch.dtype) -> None:
        self.gen = torch.Generator().manual_seed(seed)
        self.dtype = dtype
        self.sd: Dict[str, Tensor] = OrderedDict()

    def randn(self, *shape: int, scale: float = 1.0, shift: float = 0.0) -> Tensor:
        return torch.randn(*shape, generator=self.gen, dtype=self.dtype) * scale + shift

    def weight(self, name: str, *shape: int, bias: bool = True) -> None:
        """Conv / linear weight ``(out, in, *k)`` and bias ``(out,)``."""
        fan_in = 1
        for s in shape[1:]:
            fan_in *= s
        self.sd[f'{name}.weight'] = self.randn(*shape, scale=fan_in**-0.5)
        if bias:
            self.sd[f'{name}.bias'] = self.randn(shape[0], scale=0.1)

    def norm(self, name: str, channels: int, frozen_bn: bool = False) -> None:
        """LayerNorm / GroupNorm affine; FrozenBN adds running stats (no
        ``num_batches_tracked``: detectron2 registers it as None)."""
        self.sd[f'{name}.weight'] = self.randn(channels, scale=0.2, shift=1.0)
        self.sd[f'{name}.bias'] = self.randn(channels, scale=0.1)
        if frozen_bn:
            self.sd[f'{name}.running_mean'] = self.randn(channels, scale=0.1)
            self.sd[f'{name}.running_var'] = 0.5 + torch.rand(
                channels, generator=self.gen, dtype=self.dtype)


def resnet_keys(b: _Builder, stem: int = 64, blocks: Sequence[int] = (3, 4, 6, 3)) -> None:
    """detectron2 ResNet (bottleneck, FrozenBN, convs without bias)."""
    b.weight('backbone.stem.conv1', stem, 3, 7, 7, bias=False)
    b.norm('backbone.stem.conv1.norm', stem, frozen_bn=True)
    in_ch = stem
    for stage, num in zip(range(2, 6), blocks):
        mid = stem * 2**(stage - 2)
        out = 4 * mid
        for i in range(num):
            p = f'backbone.res{stage}.{i}'
            if i == 0:  # in_channels != out_channels: projection shortcut
                b.weight(f'{p}.shortcut', out, in_ch, 1, 1, bias=False)
                b.norm(f'{p}.shortcut.norm', out, frozen_bn=True)
            for c, shape in ((1, (mid, in_ch if i == 0 else out, 1, 1)), (2, (mid, mid, 3, 3)),
                             (3, (out, mid, 1, 1))):
                b.weight(f'{p}.conv{c}', *shape, bias=False)
                b.norm(f'{p}.conv{c}.norm', shape[0], frozen_bn=True)
        in_ch = out


def pixel_decoder_keys(b: _Builder,
                       res_channels: Sequence[int],
                       dim: int = 256,
                       enc_layers: int = 6,
                       heads: int = 8,
                       points: int = 4,
                       ffn: int = 1024) -> None:
    """Mask2Former ``MSDeformAttnPixelDecoder`` over res2..res5 (channels
    ``res_channels``), the encoder on res3..res5 (``input_proj`` ordered res5, res4, res3)."""
    p = 'sem_seg_head.pixel_decoder.'
    levels = len(res_channels) - 1
    for k, ch in enumerate(reversed(res_channels[1:])):
        b.weight(f'{p}input_proj.{k}.0', dim, ch, 1, 1)
        b.norm(f'{p}input_proj.{k}.1', dim)
    b.sd[f'{p}transformer.level_embed'] = b.randn(levels, dim)
    for i in range(enc_layers):
        q = f'{p}transformer.encoder.layers.{i}.'
        b.weight(q + 'self_attn.sampling_offsets', heads * levels * points * 2, dim)
        b.sd[q + 'self_attn.sampling_offsets.bias'] = b.randn(heads * levels * points * 2)
        b.weight(q + 'self_attn.attention_weights', heads * levels * points, dim)
        b.weight(q + 'self_attn.value_proj', dim, dim)
        b.weight(q + 'self_attn.output_proj', dim, dim)
        b.norm(q + 'norm1', dim)
        b.weight(q + 'linear1', ffn, dim)
        b.weight(q + 'linear2', dim, ffn)
        b.norm(q + 'norm2', dim)
    b.weight(f'{p}mask_features', dim, dim, 1, 1)
    # one extra FPN level (res2); detectron2 Conv2d with GN: no bias
    b.weight(f'{p}adapter_1', dim, res_channels[0], 1, 1, bias=False)
    b.norm(f'{p}adapter_1.norm', dim)
    b.weight(f'{p}layer_1', dim, dim, 3, 3, bias=False)
    b.norm(f'{p}layer_1.norm', dim)


def predictor_keys(b: _Builder,
                   dim: int = 256,
                   layers: int = 9,
                   queries: int = 100,
                   ffn: int = 2048,
                   levels: int = 3) -> None:
    """``MultiScaleMaskedTransformerDecoder`` without ``class_embed`` (the authors')."""
    p = 'sem_seg_head.predictor.'
    for i in range(layers):
        for kind, attn in (('self', 'self_attn'), ('cross', 'multihead_attn')):
            q = f'{p}transformer_{kind}_attention_layers.{i}.'
            b.sd[q + f'{attn}.in_proj_weight'] = b.randn(3 * dim, dim, scale=dim**-0.5)
            b.sd[q + f'{attn}.in_proj_bias'] = b.randn(3 * dim, scale=0.1)
            b.weight(q + f'{attn}.out_proj', dim, dim)
            b.norm(q + 'norm', dim)
        q = f'{p}transformer_ffn_layers.{i}.'
        b.weight(q + 'linear1', ffn, dim)
        b.weight(q + 'linear2', dim, ffn)
        b.norm(q + 'norm', dim)
    b.norm(f'{p}decoder_norm', dim)
    b.sd[f'{p}query_feat.weight'] = b.randn(queries, dim)
    b.sd[f'{p}query_embed.weight'] = b.randn(queries, dim)
    b.sd[f'{p}level_embed.weight'] = b.randn(levels, dim)
    for i in range(3):
        b.weight(f'{p}mask_embed.layers.{i}', dim, dim)


def official_proposer_state_dict(seed: int = 0,
                                 dtype: torch.dtype = torch.float32,
                                 stem: int = 64,
                                 dim: int = 256,
                                 enc_layers: int = 6,
                                 dec_layers: int = 9,
                                 queries: int = 100,
                                 blocks: Sequence[int] = (3, 4, 6, 3),
                                 empty_weight: Optional[int] = 134) -> Dict[str, Tensor]:
    """The proposer part of ``model_final.pth`` (= ``mask_proposal_network.pth``).

    Defaults are the real sizes (R-50, 256 channels, 6 + 9 layers, 100 queries);
    smaller ones make quick key-level tests. ``criterion.empty_weight`` (134 = 133
    COCO panoptic classes + no-object) is included unless ``empty_weight`` is None.
    """
    b = _Builder(seed, dtype)
    resnet_keys(b, stem, blocks)
    pixel_decoder_keys(b, [4 * stem * 2**i for i in range(4)], dim, enc_layers, ffn=4 * dim)
    predictor_keys(b, dim, dec_layers, queries, ffn=8 * dim)
    if empty_weight:
        b.sd['criterion.empty_weight'] = torch.ones(empty_weight, dtype=dtype)
    return b.sd


def official_maskclip_state_dict(clip_visual: Dict[str, Tensor],
                                 seed: int = 0,
                                 blocks: Sequence[int] = RMA_BLOCKS) -> Dict[str, Tensor]:
    """``maskclip.visual.*`` of ``model_final.pth``: the CLIP tensors (copied from
    ``clip_visual``, an OpenAI-named visual state dict) plus random RMA parameters.

    Per RMA block ``b`` (conv index ``j = b // 6``): f2
    ``transformer.conv1_added_params.{j}`` = ``Conv2d(1, W, p, p)``, f_r's conv
    ``transformer.conv3_added_params.{j}`` = ``Conv2d(W, p*p, 1)``, phi_Qm
    ``resblocks.{b}.attn.q_prime_norm_added_params`` = ``LayerNorm(W)`` and phi_Km
    ``resblocks.{b}.attn.k_prime_proj_weight_added_params`` = ``Linear(W, W)``.
    """
    width, _, patch, _ = clip_visual['conv1.weight'].shape
    dtype = clip_visual['conv1.weight'].dtype
    b = _Builder(seed, dtype)
    b.sd.update((f'maskclip.visual.{k}', v.clone()) for k, v in clip_visual.items())
    t = 'maskclip.visual.transformer.'
    for blk in blocks:
        j = blk // 6
        b.weight(f'{t}conv1_added_params.{j}', width, 1, patch, patch)
        b.weight(f'{t}conv3_added_params.{j}', patch * patch, width, 1, 1)
        b.norm(f'{t}resblocks.{blk}.attn.q_prime_norm_added_params', width)
        b.weight(f'{t}resblocks.{blk}.attn.k_prime_proj_weight_added_params', width, width)
    return b.sd
