# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Relative Mask Attention (Eq. 3-5): fast == naive, official == reference."""
import math

import pytest
import torch
import torch.nn.functional as F

from mmmaskclip.models import MaskCLIPVisualEncoder
from mmmaskclip.models.layers import (MaskTokenBlockInputs, RelativeMaskAttention,
                                      mask_patch_coverage)

ATOL = 1e-5


def make_layer(style, impl='fast', width=32, heads=4, patch=(4, 4), seed=0, **kwargs):
    torch.manual_seed(seed)
    layer = RelativeMaskAttention(width, heads, patch, style=style, impl=impl, **kwargs)
    layer.init_weights()
    with torch.no_grad():  # every parameter non-trivial (LayerNorm gamma/beta too)
        for p in layer.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return layer.double()


def make_inputs(batch=2, masks=5, grid=(3, 4), width=32, heads=4, patch=(4, 4), seed=1):
    g = torch.Generator().manual_seed(seed)
    d = width // heads
    n = grid[0] * grid[1]
    size = (grid[0] * patch[0], grid[1] * patch[1])
    mask_logits = 2 * torch.randn(batch, masks, *size, generator=g, dtype=torch.float64)
    mask_logits[:, 0] = -3  # an empty mask
    return MaskTokenBlockInputs(
        q_mask=torch.randn(batch, heads, masks, d, generator=g, dtype=torch.float64),
        k=torch.randn(batch, heads, n + 1, d, generator=g, dtype=torch.float64),
        v=torch.randn(batch, heads, n + 1, d, generator=g, dtype=torch.float64),
        clip_tokens_normed=torch.randn(batch, n + 1, width, generator=g, dtype=torch.float64),
        mask_logits=mask_logits,
        coverage=mask_patch_coverage(mask_logits, patch),
        grid_size=grid,
        patch_size=patch,
        block_index=0)


@pytest.mark.parametrize('style', ['paper', 'official'])
@pytest.mark.parametrize('masks,grid,patch', [(1, (2, 2), (4, 4)), (5, (3, 4), (4, 4)),
                                              (13, (2, 3), (3, 2)), (9, (4, 4), (2, 2))])
def test_fast_equals_naive(style, masks, grid, patch):
    fast = make_layer(style, 'fast', patch=patch, chunk_size=4)
    naive = make_layer(style, 'naive', patch=patch)
    naive.load_state_dict(fast.state_dict())
    inputs = make_inputs(masks=masks, grid=grid, patch=patch)
    torch.testing.assert_close(
        fast.relative_logits_fast(inputs.mask_logits, inputs.clip_tokens_normed[:, 1:]),
        naive.relative_logits_naive(inputs.mask_logits, inputs.clip_tokens_normed[:, 1:]),
        atol=ATOL,
        rtol=0)
    out_f, masks_f = fast(inputs)
    out_n, masks_n = naive(inputs)
    torch.testing.assert_close(out_f, out_n, atol=ATOL, rtol=0)
    torch.testing.assert_close(masks_f, masks_n, atol=ATOL, rtol=0)
    with torch.no_grad():  # the in-place chunk writing of inference
        out_i, masks_i = fast(inputs)
    torch.testing.assert_close(out_i, out_n, atol=ATOL, rtol=0)
    torch.testing.assert_close(masks_i, masks_n, atol=ATOL, rtol=0)
    assert torch.isfinite(out_f).all()


def official_reference(layer, inputs):
    """The authors' RMA layer as DESIGN §3 describes it, written out head by
    head with F.layer_norm / F.conv2d / F.pixel_shuffle."""
    q, k, v = inputs.q_mask, inputs.k, inputs.v
    b, h, m, d = q.shape
    width, p = h * d, inputs.patch_size[0]
    gh, gw = inputs.grid_size
    conv1 = layer.mask_patch_embed
    t_mp = F.conv2d(
        torch.tanh(inputs.mask_logits).reshape(b * m, 1, gh * p, gw * p),
        conv1.weight,
        conv1.bias,
        stride=p)  # (bm, W, gh, gw)
    t_mp = t_mp.reshape(b, m, width, gh * gw).transpose(2, 3)  # B M N W
    ln = layer.query_proj_m
    q_prime = F.layer_norm(t_mp, (width, ), ln.weight, ln.bias, ln.eps)
    k_prime = F.linear(inputs.clip_tokens_normed[:, 1:], layer.key_proj_m.weight,
                       layer.key_proj_m.bias)  # B N W
    out = torch.empty_like(q)
    for head in range(h):
        sl = slice(head * d, (head + 1) * d)
        logits = q[:, head] @ k[:, head].transpose(1, 2) / math.sqrt(d)  # B M L
        a_prime = (q_prime[..., sl] * k_prime[:, None, :, sl]).sum(-1) / math.sqrt(d)
        logits = torch.cat([logits[..., :1], (logits[..., 1:] + a_prime) / 2], dim=-1)
        allowed = torch.cat([torch.ones(b, m, 1, dtype=torch.bool), inputs.coverage], -1)
        logits = logits + torch.zeros_like(logits).masked_fill(~allowed, float('-inf'))
        out[:, head] = logits.softmax(-1) @ v[:, head]
    q_scaled = torch.cat([q[:, i] for i in range(h)], dim=-1) / math.sqrt(d)  # B M W
    k_cat = torch.cat([k[:, i, 1:] for i in range(h)], dim=-1)  # B N W
    prod = q_scaled[:, :, None] * k_cat[:, None]  # B M N W
    prod = prod.reshape(b * m, gh, gw, width).permute(0, 3, 1, 2)
    prod = prod * torch.sigmoid(1.702 * prod)
    conv3 = layer.refiner[1]
    res = F.pixel_shuffle(F.conv2d(prod, conv3.weight, conv3.bias), p)
    return out, inputs.mask_logits + res.reshape(b, m, gh * p, gw * p)


@pytest.mark.parametrize('impl', ['fast', 'naive'])
def test_official_matches_reference(impl):
    layer = make_layer('official', impl, chunk_size=2)
    inputs = make_inputs(masks=6)
    out, masks = layer(inputs)
    ref_out, ref_masks = official_reference(layer, inputs)
    torch.testing.assert_close(out, ref_out, atol=ATOL, rtol=0)
    torch.testing.assert_close(masks, ref_masks, atol=ATOL, rtol=0)


def test_official_parameter_shapes():
    layer = RelativeMaskAttention(64, 4, (14, 14), style='official')
    layer.init_weights()
    assert layer.mask_patch_embed.weight.shape == (64, 1, 14, 14)
    assert isinstance(layer.query_proj_m, torch.nn.LayerNorm)
    assert layer.refiner[1].weight.shape == (196, 64, 1, 1)
    assert (layer.refiner[1].bias >= 0).all() and (layer.refiner[1].bias <= 1).all()
    assert (layer.key_proj_m.bias == 0).all()


def test_paper_style_starts_as_identity_refinement():
    layer = RelativeMaskAttention(32, 4, (4, 4), style='paper').double()
    layer.init_weights()
    inputs = make_inputs()
    _, masks = layer(inputs)
    torch.testing.assert_close(masks, inputs.mask_logits)


def test_without_refinement():
    layer = make_layer('paper', refine_masks=False)
    out, masks = layer(make_inputs())
    assert masks is None and layer.refiner is None and torch.isfinite(out).all()


def test_bad_options():
    with pytest.raises(ValueError, match='style'):
        RelativeMaskAttention(32, 4, (4, 4), style='detectron2')
    with pytest.raises(ValueError, match='impl'):
        RelativeMaskAttention(32, 4, (4, 4), impl='cuda')


@pytest.mark.parametrize('style', ['paper', 'official'])
def test_encoder_with_rma_layers(style, tiny_clip):
    """RMA layers in blocks 0 and 2: fast and naive encoders agree in
    outputs and gradients; refined masks of each RMA layer are returned;
    only RMA parameters get gradients."""
    rma = dict(type='RelativeMaskAttention', style=style, chunk_size=2)
    encoders = []
    for impl in ('fast', 'naive'):
        torch.manual_seed(0)
        enc = MaskCLIPVisualEncoder(
            clip=tiny_clip,
            mask_attention_overrides={
                0: dict(rma, impl=impl),
                2: dict(rma, impl=impl)
            })
        enc.init_weights()
        encoders.append(enc)
    encoders[1].load_state_dict(encoders[0].state_dict())
    images = torch.randn(2, 3, 64, 64)
    masks = F.interpolate(torch.randn(2, 5, 8, 8), size=(64, 64))
    outs = []
    for enc in encoders:
        enc.train()
        out = enc(images, masks)
        (out.region_embeds.sum() + sum(m.mean() for m in out.mask_logits)).backward()
        outs.append(out)
    fast, naive = outs
    assert len(fast.mask_logits) == 2 and fast.mask_logits[0].shape == (2, 5, 64, 64)
    torch.testing.assert_close(fast.region_embeds, naive.region_embeds, atol=ATOL, rtol=0)
    torch.testing.assert_close(fast.mask_logits[-1], naive.mask_logits[-1], atol=1e-4, rtol=0)
    for (name, p_fast), p_naive in zip(encoders[0].named_parameters(), encoders[1].parameters()):
        if 'mask_attention' in name:
            assert p_fast.requires_grad and p_fast.grad is not None, name
            torch.testing.assert_close(p_fast.grad, p_naive.grad, atol=1e-4, rtol=1e-4)
        else:
            assert not p_fast.requires_grad and p_fast.grad is None, name


@pytest.mark.parametrize('style', ['paper', 'official'])
def test_encoder_inference_path_equals_training_path(style, tiny_clip):
    """Without autograd the encoder fuses the CLIP and mask-token streams and
    the RMA layers write their chunks in place (chunk sizes from the memory
    budget): the same region embeddings and refined masks as with autograd."""
    rma = dict(type='RelativeMaskAttention', style=style, chunk_memory=0.01)
    torch.manual_seed(0)
    enc = MaskCLIPVisualEncoder(clip=tiny_clip, mask_attention_overrides={0: rma, 2: rma})
    enc.init_weights()
    with torch.no_grad():  # every RMA parameter non-trivial
        for p in enc.mask_attention.parameters():
            p.add_(0.1 * torch.randn_like(p))
    enc.eval()
    assert enc.mask_attention[0].masks_per_chunk(16, 4) < 7  # several chunks
    images = torch.randn(2, 3, 64, 64)
    masks = F.interpolate(torch.randn(2, 7, 8, 8), size=(64, 64))
    train_path = enc(images, masks)
    with torch.no_grad():
        infer_path = enc(images, masks)
    torch.testing.assert_close(
        infer_path.region_embeds, train_path.region_embeds, atol=ATOL, rtol=0)
    assert len(infer_path.mask_logits) == len(train_path.mask_logits) == 2
    for a, b in zip(infer_path.mask_logits, train_path.mask_logits):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    assert (train_path.mask_logits[-1] - masks).abs().max() > 1e-2  # refinement ran


class CountingRMA(RelativeMaskAttention):
    """Counts the chunk forwards (recomputations in the backward included)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.chunk_forwards = 0

    def _forward_chunk(self, *args):
        self.chunk_forwards += 1
        return super()._forward_chunk(*args)


@pytest.mark.parametrize('style', ['paper', 'official'])
@pytest.mark.parametrize('num_masks,chunks', [(7, 3), (2, 1)])
def test_activation_checkpointing_recomputes_and_gives_same_gradients(style, num_masks, chunks):
    """with_cp recomputes every chunk in the backward pass (also when all
    masks fit one chunk) and gives the plain gradients."""
    inputs = make_inputs(masks=num_masks)
    grads = []
    for with_cp in (False, True):
        torch.manual_seed(0)
        layer = CountingRMA(32, 4, (4, 4), style=style, chunk_size=3, with_cp=with_cp)
        layer.init_weights()
        layer = layer.double().train()
        out, masks = layer(inputs)
        assert layer.chunk_forwards == chunks
        (out.square().sum() + masks.sigmoid().mean()).backward()
        assert layer.chunk_forwards == chunks * (2 if with_cp else 1)
        grads.append([p.grad.clone() for p in layer.parameters()])
    for g_plain, g_cp in zip(*grads):
        torch.testing.assert_close(g_cp, g_plain, atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize('style', ['paper', 'official'])
def test_mixed_precision_forward_backward(style, tiny_clip):
    """Under autocast (bf16 on the CPU; the GPU path uses the same ops) the
    encoder with RMA layers stays finite and close to fp32."""
    rma = dict(type='RelativeMaskAttention', style=style, chunk_size=2)
    torch.manual_seed(0)
    enc = MaskCLIPVisualEncoder(clip=tiny_clip, mask_attention_overrides={1: rma, 2: rma})
    enc.init_weights()
    enc.train()
    images = torch.randn(1, 3, 64, 64)
    masks = F.interpolate(torch.randn(1, 5, 8, 8), size=(64, 64))
    ref = enc(images, masks)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = enc(images, masks)
    loss = out.region_embeds.float().sum() + out.mask_logits[-1].float().mean()
    loss.backward()
    assert torch.isfinite(out.region_embeds.float()).all()
    assert all(torch.isfinite(p.grad).all() for p in enc.parameters() if p.grad is not None)
    torch.testing.assert_close(out.region_embeds.float(), ref.region_embeds, atol=0.1, rtol=0.1)


@pytest.mark.parametrize('style', ['official', 'paper'])
def test_initialisation_is_the_authors(style):
    """``nn.init.kaiming_normal_`` with torch's defaults (fan_in, gain
    sqrt(2)), as the authors call it: at ViT-L/14 size f2's weight has std
    sqrt(2 / 196) = 0.101 and φ_Km's sqrt(2 / 1024) = 0.044 (mmengine's
    ``kaiming_init`` defaults to fan_out: 0.0032 and 0.044)."""
    torch.manual_seed(0)
    layer = RelativeMaskAttention(1024, 16, (14, 14), style=style)
    layer.init_weights()
    expected = {'mask_patch_embed': math.sqrt(2 / 196), 'key_proj_m': math.sqrt(2 / 1024)}
    if style == 'official':  # f_r: QuickGELU + Conv2d(1024, 196, 1)
        expected['refiner.1'] = math.sqrt(2 / 1024)
    else:  # phi_Qm linear, f_r's hidden conv (its output conv is zero)
        expected.update({'query_proj_m': math.sqrt(2 / 1024), 'refiner.0': math.sqrt(2 / 1024)})
        assert (layer.refiner[-1].weight == 0).all()
    for name, std in expected.items():
        weight = layer.get_submodule(name).weight
        assert weight.std().item() == pytest.approx(std, rel=0.03), name
        assert abs(weight.mean().item()) < 0.05 * std, name
    for conv in [layer.mask_patch_embed] + ([layer.refiner[1]] if style == 'official' else []):
        assert 0 <= conv.bias.min() and conv.bias.max() <= 1 and conv.bias.std() > 0.2
    assert (layer.key_proj_m.bias == 0).all()
    if style == 'official':  # LayerNorm phi_Qm keeps torch's default
        assert (layer.query_proj_m.weight == 1).all() and (layer.query_proj_m.bias == 0).all()
