# Copyright (c) mmmaskclip contributors. All rights reserved.
"""MaskCLIP Visual Encoder (Eq. 1-2) checked against open_clip itself."""
import open_clip
import pytest
import torch
from conftest import registered, tiny_clip_cfg
from mmdet.registry import MODELS
from open_clip.model import resize_pos_embed

from mmmaskclip.models import MaskCLIPVisualEncoder, MaskTokenAttention

ATOL = 1e-5


def encoder(clip, **kwargs):
    return MaskCLIPVisualEncoder(clip=clip, **kwargs)


def clip_at_size(clip, size):
    """The same CLIP re-created for another input size, with open_clip's own
    positional-embedding resize (the independent reference)."""
    visual = clip.visual
    new = open_clip.CLIP(
        embed_dim=visual.output_dim,
        vision_cfg=dict(
            image_size=size,
            layers=len(visual.transformer.resblocks),
            width=visual.conv1.out_channels,
            patch_size=visual.patch_size[0],
            head_width=16),
        text_cfg=dict(context_length=77, vocab_size=49408, width=64, heads=4, layers=2))
    state = clip.state_dict()
    resize_pos_embed(state, new)
    new.load_state_dict(state)
    return new.eval()


def blocky_masks(*shape, size=(64, 64), cells=8):
    """Random masks made of blocks: each covers some patches and not others."""
    return torch.nn.functional.interpolate(torch.randn(*shape, cells, cells), size=size)


def full_masks(batch, num, size):
    return torch.ones(batch, num, *size)


@pytest.mark.parametrize('clip_name', ['tiny_clip', 'tiny_clip_p14'])
def test_full_mask_equals_encode_image(clip_name, request):
    clip = request.getfixturevalue(clip_name)
    size = clip.visual.image_size
    images = torch.randn(2, 3, *size)
    out = encoder(clip)(images, full_masks(2, 3, size))
    ref = clip.encode_image(images, normalize=True)
    assert out.region_embeds.shape == (2, 3, clip.visual.output_dim)
    for i in range(3):
        torch.testing.assert_close(out.region_embeds[:, i], ref, atol=ATOL, rtol=0)
    torch.testing.assert_close(out.image_embeds, ref, atol=ATOL, rtol=0)


@pytest.mark.parametrize('clip_name,size', [('tiny_clip', (96, 96)), ('tiny_clip', (48, 80)),
                                            ('tiny_clip_p14', (84, 84)),
                                            ('tiny_clip_p14', (42, 42))])
def test_other_input_size_matches_resized_clip(clip_name, size, request):
    clip = request.getfixturevalue(clip_name)
    ref_clip = clip_at_size(clip, size)
    images = torch.randn(1, 3, *size)
    out = encoder(clip)(images, full_masks(1, 2, (7, 5)))  # masks at another resolution
    ref = ref_clip.encode_image(images, normalize=True)
    torch.testing.assert_close(out.region_embeds[:, 0], ref, atol=ATOL, rtol=0)
    torch.testing.assert_close(out.image_embeds, ref, atol=ATOL, rtol=0)


def test_clip_tokens_equal_plain_clip(tiny_clip):
    images = torch.randn(2, 3, 64, 64)
    masks = torch.randn(2, 5, 64, 64)
    out = encoder(tiny_clip)(images, masks)
    visual = tiny_clip.visual
    ref_tokens = visual.transformer(visual._embeds(images))
    torch.testing.assert_close(out.clip_tokens, ref_tokens, atol=ATOL, rtol=0)


def reference_full_sequence(clip, images, masks):
    """Eq. 1 literally: one sequence [class, patches, mask tokens] through
    open_clip's own transformer with a float attention mask."""
    visual = clip.visual
    x = visual._embeds(images)
    b, length, _ = x.shape
    m = masks.shape[1]
    ph = visual.patch_size[0]
    cover = torch.nn.functional.max_pool2d((masks >= 0).float(), ph, ph).flatten(2) > 0
    seq = torch.cat([x, x[:, :1].expand(b, m, -1)], dim=1)
    allowed = torch.zeros(b, length + m, length + m, dtype=torch.bool)
    allowed[:, :length, :length] = True  # CLIP tokens attend each other only
    allowed[:, length:, 0] = True  # mask tokens attend the class token
    allowed[:, length:, 1:length] = cover  # ... and covered patches, no mask token
    bias = torch.zeros(allowed.shape).masked_fill(~allowed, float('-inf'))
    heads = visual.transformer.resblocks[0].attn.num_heads
    bias = bias.repeat_interleave(heads, dim=0)
    out = visual.transformer(seq, attn_mask=bias)
    return torch.nn.functional.normalize(visual.ln_post(out[:, length:]) @ visual.proj, dim=-1)


@pytest.mark.parametrize('clip_name', ['tiny_clip', 'tiny_clip_p14'])
@pytest.mark.parametrize('grad', [True, False])
def test_matches_eq1_reference(clip_name, grad, request):
    """With autograd (CLIP and mask tokens in separate streams) and without
    (inference: one fused stream), the encoder equals Eq. 1 written out."""
    clip = request.getfixturevalue(clip_name)
    size = clip.visual.image_size
    torch.manual_seed(0)
    images = torch.randn(2, 3, *size)
    # blocky random masks: some patches covered, some not
    masks = blocky_masks(2, 6, size=size)
    masks[:, 0] = -1  # empty mask: attends the class token only
    masks[:, 1] = -1
    masks[:, 1, :3, :3] = 0.0  # a logit of exactly 0 counts as covered
    with torch.set_grad_enabled(grad):
        out = encoder(clip)(images, masks)
    ref = reference_full_sequence(clip, images, masks)
    torch.testing.assert_close(out.region_embeds, ref, atol=ATOL, rtol=0)
    # the masks do change the result (the test can fail)
    assert (out.region_embeds[:, 2] - out.region_embeds[:, 3]).abs().max() > 1e-3


def test_other_mask_tokens_do_not_interact(tiny_clip):
    torch.manual_seed(1)
    images = torch.randn(1, 3, 64, 64)
    masks = blocky_masks(1, 6)
    enc = encoder(tiny_clip)
    base = enc(images, masks).region_embeds
    assert (base[:, 0] - base[:, 1]).abs().max() > 1e-3  # the masks matter
    perm = torch.tensor([3, 1, 5, 0, 2, 4])
    permuted = enc(images, masks[:, perm]).region_embeds
    torch.testing.assert_close(permuted, base[:, perm], atol=ATOL, rtol=0)
    subset = enc(images, masks[:, 2:4]).region_embeds
    torch.testing.assert_close(subset, base[:, 2:4], atol=ATOL, rtol=0)
    more = enc(images, torch.cat([masks, blocky_masks(1, 4)], 1)).region_embeds
    torch.testing.assert_close(more[:, :6], base, atol=ATOL, rtol=0)


def test_empty_masks_are_finite_and_equal(tiny_clip):
    images = torch.randn(2, 3, 64, 64)
    masks = torch.full((2, 3, 16, 16), -5.0)
    out = encoder(tiny_clip)(images, masks)
    assert torch.isfinite(out.region_embeds).all()
    torch.testing.assert_close(out.region_embeds[:, 0], out.region_embeds[:, 2])
    assert not torch.allclose(out.region_embeds[:, 0], out.image_embeds, atol=1e-3)


def test_mask_resolution_is_free(tiny_clip):
    images = torch.randn(1, 3, 64, 64)
    low = (torch.rand(1, 4, 8, 8) > 0.5).float() * 2 - 1
    high = low.repeat_interleave(8, dim=2).repeat_interleave(8, dim=3)  # exact upsampling
    enc = encoder(tiny_clip)
    torch.testing.assert_close(
        enc(images, low > 0).region_embeds, enc(images, high).region_embeds, atol=ATOL, rtol=0)
    double = high.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    torch.testing.assert_close(
        enc(images, double).region_embeds, enc(images, high).region_embeds, atol=ATOL, rtol=0)


def test_mixed_mask_counts_equal_single_images(tiny_clip):
    torch.manual_seed(2)
    images = torch.randn(2, 3, 64, 64)
    masks = [blocky_masks(1, 3, size=(32, 32))[0], blocky_masks(1, 1)[0]]
    enc = encoder(tiny_clip)
    out = enc(images, masks)
    assert out.valid.tolist() == [[True, True, True], [True, False, False]]
    assert (out.region_embeds[1, 1:] == 0).all()
    for i, m in enumerate(masks):
        single = enc(images[i:i + 1], m[None]).region_embeds[0]
        torch.testing.assert_close(out.region_embeds[i, :len(m)], single, atol=ATOL, rtol=0)
    # explicit validity on a padded tensor gives the same
    padded = torch.zeros(2, 3, 64, 64)
    padded[0] = torch.nn.functional.interpolate(masks[0][None], size=(64, 64), mode='bilinear')[0]
    padded[1, 0] = masks[1][0]
    out2 = enc(images, padded, valid=out.valid)
    torch.testing.assert_close(out2.region_embeds, out.region_embeds, atol=ATOL, rtol=0)


def test_clip_is_frozen(tiny_clip):
    enc = encoder(tiny_clip)
    assert not any(p.requires_grad for p in enc.parameters())
    enc.train()
    assert not enc.clip_visual.training
    assert enc.embed_dim == tiny_clip.visual.output_dim


def test_bad_inputs(tiny_clip):
    enc = encoder(tiny_clip)
    with pytest.raises(ValueError, match='multiple of the patch size'):
        enc(torch.randn(1, 3, 60, 64), torch.ones(1, 1, 60, 64))
    with pytest.raises(ValueError, match='masks for 2 images'):
        enc(torch.randn(1, 3, 64, 64), torch.ones(2, 1, 64, 64))
    with pytest.raises(ValueError, match='NaN'):
        enc(torch.randn(1, 3, 64, 64), torch.full((1, 1, 64, 64), float('nan')))
    with pytest.raises(ValueError, match=r'\(B, 3, H, W\)'):
        enc(torch.randn(3, 64, 64), torch.ones(1, 1, 64, 64))
    with pytest.raises(ValueError, match='blocks'):
        encoder(tiny_clip, mask_attention_overrides={7: dict(type='MaskTokenAttention')})
    with pytest.raises(TypeError, match='ViT'):
        encoder(
            open_clip.CLIP(
                embed_dim=32,
                vision_cfg=dict(layers=(1, 1, 1, 1), width=16, image_size=64),
                text_cfg=dict(width=32, heads=2, layers=1)))


def test_zero_masks(tiny_clip):
    out = encoder(tiny_clip)(torch.randn(2, 3, 64, 64), torch.zeros(2, 0, 64, 64))
    assert out.region_embeds.shape == (2, 0, tiny_clip.visual.output_dim)


class _FullImageRefiner(MaskTokenAttention):
    """Test layer: attends everything and replaces the masks by full masks."""

    def forward(self, inputs):
        out = torch.nn.functional.scaled_dot_product_attention(inputs.q_mask, inputs.k, inputs.v)
        return out, torch.ones_like(inputs.mask_logits)


def test_mask_attention_hook(tiny_clip):
    """A layer in the hook sees every block, and its refined masks drive all
    later blocks: attending everything from block 0 on gives CLIP's own
    embedding whatever the input masks were."""
    with registered(MODELS, _FullImageRefiner):
        enc = encoder(tiny_clip, mask_attention_overrides={0: dict(type='_FullImageRefiner')})
    assert MODELS.get('_FullImageRefiner') is None
    images = torch.randn(1, 3, 64, 64)
    out = enc(images, torch.full((1, 2, 64, 64), -1.0))
    torch.testing.assert_close(
        out.region_embeds[:, 0], tiny_clip.encode_image(images, normalize=True), atol=ATOL, rtol=0)
    assert len(out.mask_logits) == 1 and out.mask_logits[0].shape == (1, 2, 64, 64)
    plain = encoder(tiny_clip)(images, torch.full((1, 2, 64, 64), -1.0))
    assert plain.mask_logits == []


def test_from_state_dict_file(tiny_clip, tmp_path):
    path = tmp_path / 'tiny.pt'
    torch.save(tiny_clip.state_dict(), path)
    enc = encoder(dict(model_cfg=tiny_clip_cfg(), pretrained=str(path)))
    images = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(
        enc(images, torch.ones(1, 1, 64, 64)).region_embeds[:, 0],
        tiny_clip.encode_image(images, normalize=True),
        atol=ATOL,
        rtol=0)
