# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Property tests (hypothesis) of the visual encoder and Relative Mask
Attention over random mask counts, mask kinds, image sizes and layer shapes.

Every test is derandomised (the same examples on every run, so CI is
reproducible) and draws small sizes: tiny CLIPs, a few masks, a few patches.
Geometry and post-processing properties live in
``test_properties_outputs.py``.
"""
import pytest
import torch
from conftest import make_tiny_clip
from hypothesis import given, settings
from hypothesis import strategies as st

from mmmaskclip.models import MaskCLIPVisualEncoder
from mmmaskclip.models.layers import (MaskTokenBlockInputs, RelativeMaskAttention,
                                      mask_patch_coverage)
from mmmaskclip.models.utils import resize_mask_logits

#: float32 tolerance of the encoder (fused GEMMs of different sizes).
ATOL = 2e-5
#: float64 tolerance of fast vs naive RMA.
ATOL64 = 1e-9

PROPERTY = dict(deadline=None, derandomize=True, database=None)
RMA = dict(type='RelativeMaskAttention', chunk_size=2, refine_channels=16)


def perturbed(module, seed=0, scale=0.1):
    """``module`` with every parameter moved off its initialisation."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.add_(scale * torch.randn_like(param))
    return module


class Encoders(dict):
    """The encoders by key, with a short repr in hypothesis' failure reports."""

    def __repr__(self) -> str:
        return f'Encoders({sorted(self, key=str)})'


@pytest.fixture(scope='module')
def encoders():
    """``{(patch, rma style or None): encoder}``, eval mode: plain Eq. 1-2
    encoders and encoders with RMA layers in blocks 0 and 2 (several chunks
    of 2 masks), on a patch-16 and a patch-14 tiny CLIP."""
    clips = {16: make_tiny_clip(), 14: make_tiny_clip(seed=1, patch_size=14, image_size=56)}
    out = Encoders()
    for patch, clip in clips.items():
        out[patch, None] = MaskCLIPVisualEncoder(clip=clip).eval()
        for style in ('paper', 'official'):
            layer = dict(RMA, style=style)
            enc = MaskCLIPVisualEncoder(clip=clip, mask_attention_overrides={0: layer, 2: layer})
            for module in enc.mask_attention:
                module.init_weights()
            perturbed(enc.mask_attention)
            out[patch, style] = enc.eval()
    return out


@st.composite
def mask_batches(draw, batch, max_masks=6, min_masks=0):
    """``(B, M, h, w)`` float logits at a random resolution: blocky random
    masks (some patches in, some out), empty masks (all negative) and full
    masks (all positive), mixed per mask."""
    num = draw(st.integers(min_masks, max_masks))
    cells = draw(st.integers(1, 6))
    size = (draw(st.integers(cells, 40)), draw(st.integers(cells, 40)))
    kinds = draw(st.lists(st.sampled_from(['random', 'empty', 'full']), min_size=num, max_size=num))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    rows, cols = (torch.arange(n) * cells // n for n in size)  # nearest upsampling
    masks = torch.randn(batch, num, cells, cells, generator=gen)[:, :, rows][..., cols]
    for i, kind in enumerate(kinds):
        if kind != 'random':
            sign = 1.0 if kind == 'full' else -1.0
            masks[:, i] = sign * (0.1 + torch.rand(batch, *size, generator=gen) * 10)
    return masks


@st.composite
def encoder_cases(draw, max_masks=6):
    """An encoder key, images ``(B, 3, H, W)`` of 1-4 patches a side and masks
    (at least one with RMA layers: see :func:`test_encoder_no_mask_tokens`)."""
    patch = draw(st.sampled_from([16, 14]))
    style = draw(st.sampled_from([None, 'paper', 'official']))
    batch = draw(st.integers(1, 2))
    height, width = (patch * draw(st.integers(1, 4)) for _ in range(2))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    images = torch.randn(batch, 3, height, width, generator=gen)
    masks = draw(mask_batches(batch, max_masks, min_masks=int(style is not None)))
    return (patch, style), images, masks


@settings(max_examples=15, **PROPERTY)
@given(case=encoder_cases())
def test_encoder_shapes_and_finite(encoders, case):
    key, images, masks = case
    enc = encoders[key]
    with torch.no_grad():
        out = enc(images, masks)
    batch, num = masks.shape[:2]
    assert out.region_embeds.shape == (batch, num, enc.embed_dim)
    assert out.image_embeds.shape == (batch, enc.embed_dim)
    assert out.valid.shape == (batch, num) and out.valid.all()
    assert torch.isfinite(out.region_embeds).all()
    # L2-normalised region embeddings (empty masks included)
    norms = out.region_embeds.norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones_like(norms), atol=1e-5, rtol=0)
    if key[1] is None:  # a full mask sees what the class token sees: CLIP's embedding
        full = (masks > 0).flatten(2).all(-1)
        image = out.image_embeds[:, None].expand_as(out.region_embeds)
        torch.testing.assert_close(out.region_embeds[full], image[full], atol=ATOL, rtol=0)
    refined = 0 if key[1] is None else 2
    assert len(out.mask_logits) == refined
    for logits in out.mask_logits:
        assert logits.shape == (batch, num, *images.shape[-2:])
        assert torch.isfinite(logits).all()


@settings(max_examples=12, **PROPERTY)
@given(case=encoder_cases(), data=st.data())
def test_encoder_mask_tokens_are_independent(encoders, case, data):
    """Region embedding ``i`` depends on mask ``i`` only: a permutation, a
    subset and extra masks leave it unchanged (refined masks likewise)."""
    key, images, masks = case
    num = masks.shape[1]
    enc = encoders[key]
    perm = torch.tensor(data.draw(st.permutations(range(num))), dtype=torch.long)
    keep = torch.tensor(
        data.draw(
            st.lists(
                st.integers(0, max(num - 1, 0)),
                min_size=min(num, int(key[1] is not None)),
                max_size=num,
                unique=True)),
        dtype=torch.long)
    extra = data.draw(mask_batches(masks.shape[0], max_masks=3))
    extra = resize_mask_logits(extra, masks.shape[-2:])
    with torch.no_grad():
        base = enc(images, masks)
        permuted = enc(images, masks[:, perm])
        subset = enc(images, masks[:, keep])
        more = enc(images, torch.cat([extra, masks], 1))
    close = dict(atol=ATOL, rtol=0)
    torch.testing.assert_close(permuted.region_embeds, base.region_embeds[:, perm], **close)
    torch.testing.assert_close(subset.region_embeds, base.region_embeds[:, keep], **close)
    torch.testing.assert_close(more.region_embeds[:, extra.shape[1]:], base.region_embeds, **close)
    for base_m, perm_m, sub_m in zip(base.mask_logits, permuted.mask_logits, subset.mask_logits):
        torch.testing.assert_close(perm_m, base_m[:, perm], atol=1e-4, rtol=0)
        torch.testing.assert_close(sub_m, base_m[:, keep], atol=1e-4, rtol=0)


@settings(max_examples=15, **PROPERTY)
@given(case=encoder_cases(), data=st.data())
def test_encoder_padding_rows_are_zero(encoders, case, data):
    """``valid=False`` rows are exactly zero, whatever their masks hold; the
    valid rows equal an encoding of the valid masks alone (per image)."""
    key, images, masks = case
    batch, num = masks.shape[:2]
    flags = data.draw(st.lists(st.booleans(), min_size=batch * num, max_size=batch * num))
    valid = torch.tensor(flags, dtype=torch.bool).view(batch, num)
    enc = encoders[key]
    with torch.no_grad():
        out = enc(images, masks, valid=valid)
        assert torch.equal(out.valid, valid)
        assert (out.region_embeds[~valid] == 0).all()
        for i in range(batch):
            if key[1] is not None and not valid[i].any():
                continue  # no mask tokens at all: test_encoder_no_mask_tokens
            alone = enc(images[i:i + 1], masks[i:i + 1, valid[i]]).region_embeds[0]
            torch.testing.assert_close(out.region_embeds[i, valid[i]], alone, atol=ATOL, rtol=0)


# --------------------------------------------------------- RMA fast vs naive
@st.composite
def rma_cases(draw):
    """Layer options and float64 block inputs of random shapes."""
    heads = draw(st.sampled_from([1, 2, 4]))
    width = heads * draw(st.sampled_from([2, 4, 8]))
    patch = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    grid = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    batch, num = draw(st.integers(1, 2)), draw(st.integers(1, 9))  # 0: test_rma_no_mask_tokens
    options = dict(
        style=draw(st.sampled_from(['paper', 'official'])),
        refine_masks=draw(st.booleans()),
        refine_channels=draw(st.sampled_from([1, 8])))
    if draw(st.booleans()):
        options['chunk_size'] = draw(st.integers(1, 5))
    else:  # a few KiB: from one mask per chunk to all of them
        options['chunk_memory'] = draw(st.floats(1e-4, 0.05))
    seed = draw(st.integers(0, 2**16))
    grad = draw(st.booleans())
    return options, (batch, num, width, heads, patch, grid), seed, grad


def rma_inputs(batch, num, width, heads, patch, grid, seed):
    """Random float64 :class:`MaskTokenBlockInputs`; some masks empty, some full."""
    gen = torch.Generator().manual_seed(seed)
    n = grid[0] * grid[1]
    d = width // heads
    size = (grid[0] * patch[0], grid[1] * patch[1])

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    masks = 3 * randn(batch, num, *size)
    if num > 1:
        masks[:, 0] = -5.0  # empty
        masks[:, 1] = 5.0  # full
    return MaskTokenBlockInputs(
        q_mask=randn(batch, heads, num, d),
        k=randn(batch, heads, n + 1, d),
        v=randn(batch, heads, n + 1, d),
        clip_tokens_normed=randn(batch, n + 1, width),
        mask_logits=masks,
        coverage=mask_patch_coverage(masks, patch),
        grid_size=grid,
        patch_size=patch,
        block_index=0)


@settings(max_examples=60, **PROPERTY)
@given(case=rma_cases())
def test_rma_fast_equals_naive(case):
    options, shapes, seed, grad = case
    batch, num, width, heads, patch, _ = shapes
    fast = RelativeMaskAttention(width, heads, patch, impl='fast', **options)
    fast.init_weights()
    perturbed(fast, seed)
    fast.double()
    naive = RelativeMaskAttention(width, heads, patch, impl='naive', **options).double()
    naive.load_state_dict(fast.state_dict())
    inputs = rma_inputs(*shapes, seed)
    with torch.set_grad_enabled(grad):
        out_f, masks_f = fast(inputs)
    out_n, masks_n = naive(inputs)
    d = width // heads
    assert out_f.shape == out_n.shape == (batch, heads, num, d)
    torch.testing.assert_close(out_f, out_n, atol=ATOL64, rtol=1e-9)
    assert torch.isfinite(out_f).all()
    if not options['refine_masks']:
        assert masks_f is None and masks_n is None
        return
    assert masks_f.shape == inputs.mask_logits.shape
    torch.testing.assert_close(masks_f, masks_n, atol=ATOL64, rtol=1e-9)
    assert torch.isfinite(masks_f).all()


# ------------------------------------------------------ no mask tokens at all
@pytest.mark.parametrize('style', ['paper', 'official'])
@pytest.mark.parametrize('impl', ['fast', 'naive'])
@pytest.mark.parametrize('refine', [True, False])
def test_rma_no_mask_tokens(style, impl, refine):
    """Zero mask tokens: empty outputs of the right shapes, as the plain
    mask-token attention gives."""
    layer = RelativeMaskAttention(8, 2, (2, 2), style=style, impl=impl, refine_masks=refine)
    out, masks = layer.double()(rma_inputs(1, 0, 8, 2, (2, 2), (2, 2), seed=0))
    assert out.shape == (1, 2, 0, 4)
    assert masks is None if not refine else masks.shape == (1, 0, 4, 4)


@pytest.mark.parametrize('style', [None, 'paper', 'official'])
def test_encoder_no_mask_tokens(encoders, style):
    """``(B, 0, h, w)`` masks: ``(B, 0, E)`` region embeddings."""
    enc = encoders[16, style]
    with torch.no_grad():
        out = enc(torch.randn(2, 3, 32, 48), torch.zeros(2, 0, 8, 8))
    assert out.region_embeds.shape == (2, 0, enc.embed_dim)
    assert out.image_embeds.shape == (2, enc.embed_dim)
    assert all(m.shape == (2, 0, 32, 48) for m in out.mask_logits)
