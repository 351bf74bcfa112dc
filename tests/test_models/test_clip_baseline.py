# Copyright (c) mmmaskclip contributors. All rights reserved.
"""CLIP baseline (Algorithm 1) checked against open_clip's encode_image."""
import pytest
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

from mmmaskclip.models import CLIPBaselineEncoder

ATOL = 1e-5
BLACK = -torch.tensor(OPENAI_DATASET_MEAN) / torch.tensor(OPENAI_DATASET_STD)


def test_full_mask_equals_encode_image(tiny_clip):
    images = torch.randn(2, 3, 64, 64)
    out = CLIPBaselineEncoder(clip=tiny_clip)(images, torch.ones(2, 2, 64, 64))
    ref = tiny_clip.encode_image(images, normalize=True)
    torch.testing.assert_close(out.region_embeds[:, 0], ref, atol=ATOL, rtol=0)
    torch.testing.assert_close(out.region_embeds[:, 1], ref, atol=ATOL, rtol=0)
    assert out.image_embeds is None  # no extra CLIP pass for it


def test_masked_image_is_black_outside(tiny_clip):
    images = torch.randn(1, 3, 64, 64)
    masks = torch.zeros(1, 1, 64, 64, dtype=torch.bool)
    masks[..., 10:40, 5:50] = True
    out = CLIPBaselineEncoder(clip=tiny_clip)(images, masks)
    expected = images.clone()
    expected[:, :, ~masks[0, 0]] = BLACK.view(1, 3, 1)
    ref = tiny_clip.encode_image(expected, normalize=True)
    torch.testing.assert_close(out.region_embeds[:, 0], ref, atol=ATOL, rtol=0)
    mean_fill = CLIPBaselineEncoder(clip=tiny_clip, background='mean')(images, masks)
    expected[:, :, ~masks[0, 0]] = 0
    torch.testing.assert_close(
        mean_fill.region_embeds[:, 0],
        tiny_clip.encode_image(expected, normalize=True),
        atol=ATOL,
        rtol=0)


def test_crop_to_box(tiny_clip):
    images = torch.randn(1, 3, 128, 128)
    masks = torch.zeros(1, 2, 128, 128, dtype=torch.bool)
    masks[0, 0, 20:84, 40:104] = True  # a full 64x64 box: the crop is CLIP-sized
    masks[0, 1, 0:64, 0:64] = True
    out = CLIPBaselineEncoder(clip=tiny_clip, crop_to_box=True)(images, masks)
    ref0 = tiny_clip.encode_image(images[..., 20:84, 40:104], normalize=True)
    ref1 = tiny_clip.encode_image(images[..., 0:64, 0:64], normalize=True)
    torch.testing.assert_close(out.region_embeds[:, 0], ref0, atol=ATOL, rtol=0)
    torch.testing.assert_close(out.region_embeds[:, 1], ref1, atol=ATOL, rtol=0)


def test_chunking_padding_and_empty_masks(tiny_clip):
    torch.manual_seed(0)
    images = torch.randn(2, 3, 64, 64)
    masks = [torch.randn(5, 32, 32), torch.randn(2, 64, 64)]
    masks[1][1] = -1  # empty mask
    a = CLIPBaselineEncoder(clip=tiny_clip, chunk_size=1)(images, masks)
    b = CLIPBaselineEncoder(clip=tiny_clip, chunk_size=16, crop_to_box=True)(images, masks)
    c = CLIPBaselineEncoder(clip=tiny_clip, chunk_size=3)(images, masks)
    torch.testing.assert_close(a.region_embeds, c.region_embeds, atol=ATOL, rtol=0)
    assert torch.isfinite(b.region_embeds).all()
    assert (a.region_embeds[1, 2:] == 0).all() and a.valid[1].tolist() == [True, True] + [False] * 3


def test_options_are_checked(tiny_clip):
    with pytest.raises(ValueError, match='background'):
        CLIPBaselineEncoder(clip=tiny_clip, background='white')
    with pytest.raises(ValueError, match='chunk_size'):
        CLIPBaselineEncoder(clip=tiny_clip, chunk_size=0)
