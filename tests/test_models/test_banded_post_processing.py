# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Memory follows the work, not the photo: post-processing one band of rows
at a time equals the whole image, and no band holds ``M x H x W`` floats."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from mmmaskclip.models.geometry import OriginalMaskLogits, to_original_geometry
from mmmaskclip.models.post_processing import UniversalPostProcessor, void_column

GEOMETRIES = [
    # (h, w) of the masks, padded batch, img_shape, output size, flip
    ((50, 70), (200, 280), (190, 270), (950, 1350), 'horizontal'),
    ((200, 280), (200, 280), (190, 270), (60, 40), 'vertical'),  # antialiased shrink
    ((13, 17), (100, 120), (100, 113), (301, 402), None),
    ((300, 20), (100, 120), (90, 113), (45, 56), 'diagonal'),  # shrink to the batch
    ((1, 1), (5, 3), (5, 3), (1, 7), None),
]


@pytest.mark.parametrize('low,batch,img,out,flip', GEOMETRIES)
def test_bands_of_rows_equal_the_whole(low, batch, img, out, flip):
    gen = torch.Generator().manual_seed(0)
    logits = 5 * torch.randn(4, *low, generator=gen)
    meta = dict(img_shape=img, flip=flip is not None, flip_direction=flip)
    whole = to_original_geometry(logits, meta, batch, out)
    lazy = OriginalMaskLogits(logits, meta, batch, out)
    assert lazy.shape == tuple(whole.shape)
    assert torch.equal(lazy.full(), whole) and torch.equal(lazy.rows(0, out[0]), whole)
    step = max(1, out[0] // 7)
    bands = torch.cat([lazy.rows(s, min(s + step, out[0])) for s in range(0, out[0], step)], 1)
    torch.testing.assert_close(bands, whole, atol=2e-5, rtol=1e-5)
    index = torch.tensor([3, 1])
    torch.testing.assert_close(lazy.rows(0, 1, index), whole[index, :1], atol=2e-5, rtol=1e-5)


def random_case(num=12, classes=6, size=(40, 30), seed=0):
    gen = torch.Generator().manual_seed(seed)
    cls = void_column(3 * torch.randn(num, classes, generator=gen))
    masks = 4 * torch.randn(num, *size, generator=gen)
    return cls, masks


def assert_same_outputs(got, expected, exact=True):
    for key in ('pred_sem_seg', 'pred_panoptic_seg'):
        assert torch.equal(got[key].sem_seg, expected[key].sem_seg), key
    inst, ref = got['pred_instances'], expected['pred_instances']
    assert torch.equal(inst.labels, ref.labels) and torch.equal(inst.masks, ref.masks)
    assert torch.equal(inst.bboxes, ref.bboxes)
    torch.testing.assert_close(inst.scores, ref.scores, rtol=0 if exact else 1e-5, atol=1e-6)


@pytest.mark.parametrize('band_bytes', [1, 4 * 12 * 30 * 3, 4 * 12 * 30 * 7])
def test_post_processing_in_bands_equals_one_band(band_bytes):
    """Bands of 1, 3 and 7 rows (with a short last band) against one band."""
    cls, masks = random_case()
    options = dict(object_mask_thr=0.0, overlap_thr=0.3)
    whole = UniversalPostProcessor(band_bytes=None, **options)(cls, masks, num_things=4)
    banded = UniversalPostProcessor(band_bytes=band_bytes, **options)(cls, masks, num_things=4)
    assert len(whole['pred_instances']) > 0
    assert (whole['pred_panoptic_seg'].sem_seg % 1000 < 6).float().mean() > 0.5  # segments
    assert_same_outputs(banded, whole, exact=False)


def test_post_processing_of_original_masks_in_bands():
    """Batch masks read through ``OriginalMaskLogits`` in bands give the
    outputs of the upsampled tensor (continuous logits: no pixel on a tie)."""
    cls, _ = random_case()
    gen = torch.Generator().manual_seed(1)
    low = 4 * torch.randn(12, 10, 8, generator=gen)
    meta = dict(img_shape=(38, 30), flip=True, flip_direction='horizontal')
    whole = to_original_geometry(low, meta, (40, 32), (76, 60))
    options = dict(object_mask_thr=0.0, overlap_thr=0.3)
    expected = UniversalPostProcessor(band_bytes=None, **options)(cls, whole, num_things=4)
    lazy = OriginalMaskLogits(low, meta, (40, 32), (76, 60))
    got = UniversalPostProcessor(band_bytes=4 * 12 * 60 * 5, **options)(cls, lazy, num_things=4)
    assert_same_outputs(got, expected, exact=False)


class LargestTensors(TorchDispatchMode):
    """Records the largest float and the largest other tensor any op makes."""

    def __init__(self):
        super().__init__()
        self.largest = dict(float=0, other=0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in (out if isinstance(out, (tuple, list)) else [out]):
            if isinstance(tensor, torch.Tensor):
                kind = 'float' if tensor.is_floating_point() else 'other'
                size = tensor.numel() * tensor.element_size()
                self.largest[kind] = max(self.largest[kind], size)
        return out


def test_no_band_holds_every_proposal_over_the_image():
    """100 proposals upsampled 20x to a 1200x1600 image: M x H x W floats are
    768 MB; with 2 MiB bands no float tensor is larger than a band, and
    nothing else larger than the outputs (an int64 label map, the kept
    instances' bool masks)."""
    num, band_bytes = 100, 2 * 2**20
    gen = torch.Generator().manual_seed(0)
    cls = void_column(torch.randn(num, 3, generator=gen))
    low = 4 * torch.randn(num, 60, 80, generator=gen)
    meta = dict(img_shape=(60, 80), flip=False)
    lazy = OriginalMaskLogits(low, meta, (60, 80), (1200, 1600))
    post = UniversalPostProcessor(object_mask_thr=0.0, max_per_image=5, band_bytes=band_bytes)
    with torch.no_grad(), LargestTensors() as probe:
        out = post(cls, lazy, num_things=2)
    pixels = 1200 * 1600
    assert probe.largest['float'] <= band_bytes
    kept = len(out['pred_instances'])
    assert probe.largest['other'] <= max(8 * pixels, kept * pixels)
    assert out['pred_sem_seg'].sem_seg.shape == (1, 1200, 1600)


def test_panoptic_refuses_ids_that_would_collide():
    cls = void_column(torch.zeros(1, 1000))
    with pytest.raises(ValueError, match='at most 999 classes'):
        UniversalPostProcessor()(cls, torch.zeros(1, 2, 2), num_things=1000)
    out = UniversalPostProcessor(panoptic_on=False)(cls, torch.zeros(1, 2, 2), num_things=1000)
    assert out['pred_sem_seg'].sem_seg.shape == (1, 2, 2)
