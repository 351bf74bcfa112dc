# Copyright (c) mmmaskclip contributors. All rights reserved.
"""FLOP counting with attention: hand-computed formulas, the fast paths
against their decomposed equivalents, and whole CLIP ViTs against the
analytic count."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode, flop_registry

from mmmaskclip.utils.flop_count import (EXTRA_FLOP_FORMULAS, FlopCount, count_flops,
                                         count_flops_auto, count_params, extra_flop_formulas,
                                         fake_tensor_mode, native_mha_flops, vit_image_macs)


def torch_only_flops(fn, *args, **kwargs) -> int:
    """What torch's FlopCounterMode reports without our formulas."""
    with FlopCounterMode(display=False) as counter:
        fn(*args, **kwargs)
    return counter.get_total_flops()


def test_no_formula_is_registered_twice():
    """Our ops are ones torch has no formula for (checked against its
    registry), so the merged mapping never replaces or doubles a count."""
    assert not set(EXTRA_FLOP_FORMULAS) & set(flop_registry)
    assert extra_flop_formulas().keys() == EXTRA_FLOP_FORMULAS.keys()


@pytest.mark.parametrize('mask', [None, 'bool', 'float'])
def test_sdpa_hand_computed(mask):
    """SDPA on the CPU (its fused kernel needs dv = d): torch counts 0; ours
    counts the dense logits and the weighted sum, masked or not:
    2 x (B h Lq Lk d + B h Lq Lk dv)."""
    b, h, lq, lk, d, dv = 2, 3, 5, 7, 8, 8
    q, k, v = torch.randn(b, h, lq, d), torch.randn(b, h, lk, d), torch.randn(b, h, lk, dv)
    attn_mask = {
        None: None,
        'bool': torch.rand(b, 1, lq, lk) > 0.5,
        'float': torch.randn(b, 1, lq, lk)
    }[mask]
    count = count_flops(F.scaled_dot_product_attention, q, k, v, attn_mask=attn_mask)
    assert list(count.by_op) == ['aten._scaled_dot_product_flash_attention_for_cpu']
    assert count.flops == 2 * (2 * 3 * 5 * 7 * 8 + 2 * 3 * 5 * 7 * 8) == 6720
    assert torch_only_flops(F.scaled_dot_product_attention, q, k, v, attn_mask=attn_mask) == 0


def test_mask_token_attention_shape():
    """The masked attention of mask tokens: ``M`` queries over ``L`` keys,
    16 heads of 64: 2 x (2 M L d heads) FLOPs."""
    m, length, heads, d = 10, 50, 16, 64
    q = torch.randn(1, heads, m, d)
    k, v = torch.randn(2, 1, heads, length, d)
    allowed = torch.rand(1, 1, m, length) > 0.5
    count = count_flops(F.scaled_dot_product_attention, q, k, v, attn_mask=allowed)
    assert count.flops == 2 * (2 * m * length * d * heads)


def test_sdpa_equals_explicit_attention():
    """The fused op (ours) counts what the same attention written as matrix
    products counts (torch's own bmm formula), so fused and unfused code
    compare fairly."""
    q, k, v = torch.randn(3, 2, 4, 9, 16)

    def explicit(q, k, v):
        return (q @ k.transpose(-2, -1) / 4).softmax(-1) @ v

    assert count_flops(F.scaled_dot_product_attention, q, k,
                       v).flops == count_flops(explicit, q, k, v).flops


def test_sdpa_backward():
    """The CPU flash backward: logits recomputed + 4 products, torch's rule
    for the CUDA kernels: 2 B h Lq Lk (3 d + 2 dv)."""
    q = torch.randn(2, 3, 5, 8, requires_grad=True)
    k = torch.randn(2, 3, 7, 8, requires_grad=True)
    v = torch.randn(2, 3, 7, 8, requires_grad=True)
    out = F.scaled_dot_product_attention(q, k, v)
    count = count_flops(out.sum().backward)
    assert count.flops == 2 * 2 * 3 * 5 * 7 * (3 * 8 + 2 * 8)


def test_multihead_attention_fast_path():
    """nn.MultiheadAttention's self-attention under no_grad runs one fused
    op (torch counts 0); ours equals the decomposed path taken with autograd
    on, and the formula B (4 L E^2 + 2 L^2 E) MACs."""
    torch.manual_seed(0)
    embed, batch, length = 64, 2, 10
    mha = nn.MultiheadAttention(embed, 4, batch_first=True).eval()
    x = torch.randn(batch, length, embed)
    with torch.no_grad():
        fast = count_flops(mha, x, x, x, need_weights=False)
        assert torch_only_flops(mha, x, x, x, need_weights=False) == 0
    assert list(fast.by_op) == ['aten._native_multi_head_attention']
    slow = count_flops(mha, x, x, x, need_weights=False)
    assert 'aten._native_multi_head_attention' not in slow.by_op
    assert fast.flops == slow.flops == 2 * batch * (4 * length * embed**2 + 2 * length**2 * embed)


def test_native_mha_formula_cross_attention():
    """The fused op's formula with other key/value lengths equals the count
    of the decomposed cross-attention."""
    mha = nn.MultiheadAttention(32, 4, batch_first=True).eval()
    x, y = torch.randn(3, 5, 32), torch.randn(3, 9, 32)
    decomposed = count_flops(mha, x, y, y, need_weights=False).flops
    assert native_mha_flops(x.shape, y.shape, y.shape, 32, 4) == decomposed
    assert native_mha_flops(x.shape[1:], y.shape[1:], y.shape[1:], 32, 4) * 3 == decomposed


def test_transformer_encoder_layer_fast_path():
    """nn.TransformerEncoderLayer's fused inference op counts what its
    decomposed training path counts."""
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(64, 4, 96, batch_first=True).eval()
    x = torch.randn(2, 10, 64)
    with torch.no_grad():
        fast = count_flops(layer, x)
    assert list(fast.by_op) == ['aten._transformer_encoder_layer_fwd']
    macs = 2 * (4 * 10 * 64**2 + 2 * 10**2 * 64 + 2 * 10 * 64 * 96)
    assert fast.flops == count_flops(layer, x).flops == 2 * macs


@pytest.mark.parametrize('mode,macs', [('bilinear', 4), ('nearest', 0), ('bicubic', 16)])
def test_grid_sample(mode, macs):
    """Interpolating samples: MACs per output value and channel (torch: 0)."""
    image, grid = torch.randn(2, 3, 8, 8), torch.rand(2, 5, 6, 2) * 2 - 1
    count = count_flops(F.grid_sample, image, grid, mode=mode, align_corners=False)
    assert count.flops == 2 * macs * 2 * 3 * 5 * 6
    assert torch_only_flops(F.grid_sample, image, grid, mode=mode, align_corners=False) == 0


def test_matrix_vector_products():
    mat, vec = torch.randn(3, 4), torch.randn(4)
    assert count_flops(torch.mv, mat, vec).flops == 2 * 12
    assert count_flops(torch.dot, vec, vec).flops == 2 * 4
    assert count_flops(lambda: torch.randn(5, 6, 3) @ torch.randn(3)).flops == 2 * 90


def test_fake_tensors_count_like_real_ones():
    """On fake tensors the same ops dispatch: identical counts, and code
    that needs values falls back to a real run and says why."""
    torch.manual_seed(0)

    def run(mha, length):
        with torch.no_grad():
            x = torch.randn(1, length, 32)
            mha(x, x, x, need_weights=False)

    def build():
        return nn.MultiheadAttention(32, 4, batch_first=True).eval()

    fake, _ = count_flops_auto(build, run, [3, 9])
    real, _ = count_flops_auto(build, run, [3, 9], use_fake=False)
    assert [c.mode for c in fake] == ['fake', 'fake'] and real[0].mode == 'real'
    assert [c.flops for c in fake] == [c.flops for c in real] and fake[0].flops < fake[1].flops
    (dependent, ), _ = count_flops_auto(lambda: None, lambda _, __: torch.randn(4).nonzero())
    assert dependent.mode == 'real' and 'DynamicOutputShapeException' in dependent.note


def _checked_matmul(_, x):
    if not torch.isfinite(x).all():  # a value check: fake tensors have no values
        raise ValueError('x is not finite')
    return x @ x


def test_value_checks_are_assumed_true_and_reported():
    """A boolean check is answered True on fake tensors (the count says
    where); without that assumption the count falls back to a real run."""
    build, x = (lambda: None), torch.randn(4, 4)
    (fake, ), _ = count_flops_auto(build, lambda obj, _: _checked_matmul(obj, x))
    assert fake.mode == 'fake' and fake.flops == 2 * 4**3
    line = _checked_matmul.__code__.co_firstlineno + 1  # the check
    assert fake.note == f'assumed true: test_utils/test_flop_count.py:{line}'
    (real, ), _ = count_flops_auto(
        build, lambda obj, _: _checked_matmul(obj, x), assume_checks_pass=False)
    assert real.mode == 'real' and real.flops == fake.flops
    assert real.note == 'fake tensors failed (DataDependentOutputException)'


def test_flop_count_arithmetic():
    a = FlopCount(10, {'x': 10}, 'fake')
    b = FlopCount(4, {'x': 2, 'y': 2}, 'real', 'why')
    assert (a * 3).flops == 30 and (a * 3).by_op == {'x': 30}
    total = a + b
    assert total.flops == 14 and total.by_op == {'x': 12, 'y': 2}
    assert total.mode == 'real' and total.note == 'why' and total.macs == 7


def test_count_params_counts_shared_tensors_once():
    lin = nn.Linear(3, 4)
    model = nn.Sequential(lin, lin, nn.Linear(4, 2).requires_grad_(False))
    assert count_params(model) == (16 + 10, 16)


def _open_clip_model(name: str, fake: bool):
    open_clip = pytest.importorskip('open_clip')
    if fake:
        with fake_tensor_mode():
            return open_clip.create_model(name, pretrained=None).eval()
    torch.manual_seed(0)
    return open_clip.create_model(name, pretrained=None).eval()


def _encode_image_flops(model, size: int, fake: bool) -> int:

    def run():
        with torch.no_grad():
            model.encode_image(torch.randn(1, 3, size, size))

    if fake:
        with fake_tensor_mode():
            return count_flops(run).flops
    return count_flops(run).flops


@pytest.mark.parametrize('name,size,patch,width,layers,embed,fake', [
    pytest.param('ViT-B-16', 224, 16, 768, 12, 512, False, marks=pytest.mark.slow),
    ('ViT-B-16', 224, 16, 768, 12, 512, True),
    ('ViT-L-14-336', 336, 14, 1024, 24, 768, True),
])
def test_plain_clip_vit_matches_analytic_count(name, size, patch, width, layers, embed, fake):
    """open_clip ViTs (random weights) against the analytic count: exact here
    (the issue asks for 1%). ViT-L/14@336: 381.9 GFLOPs; torch's counter
    alone: about 233. Fake tensors (no arithmetic) count what a real run
    counts (the slow case)."""
    model = _open_clip_model(name, fake)
    flops = _encode_image_flops(model, size, fake)
    expected = 2 * vit_image_macs((size, size), patch, width, layers, embed)
    assert abs(flops - expected) <= 0.01 * expected
    assert flops == expected
    if name == 'ViT-L-14-336':
        assert round(expected / 1e9, 1) == 381.9
        with fake_tensor_mode():
            with torch.no_grad():
                naive = torch_only_flops(model.encode_image, torch.randn(1, 3, size, size))
        assert round(naive / 1e9) == 233
