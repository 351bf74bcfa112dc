# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Mixed-precision inference (bfloat16 autocast on the CPU) against float32:
region embeddings of the encoder, and whole predictions where the answer is
not borderline."""
import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import make_tiny_clip
from mmdet.registry import DATASETS, MODELS
from mmengine.config import ConfigDict
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope
from synthetic_coco import write_coco_panoptic
from tiny_maskclip import panoptic_dataset, tiny_maskclip_cfg

from mmmaskclip.models import MaskCLIPVisualEncoder

#: Mask-token attention layers of the encoder: none (MaskCLIP w/o RMA) or
#: Relative Mask Attention of either style in two of the three blocks.
VARIANTS = {
    'wo-rma': None,
    'rma-paper': dict(type='RelativeMaskAttention', style='paper'),
    'rma-official': dict(type='RelativeMaskAttention', style='official'),
}


def bf16(fn, *args):
    """``fn(*args)`` without autograd, under bfloat16 autocast on the CPU."""
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        return fn(*args)


def fp32(fn, *args):
    """``fn(*args)`` without autograd, in float32."""
    with torch.no_grad():
        return fn(*args)


def cell_masks(num: int, size: int, patch: int, seed: int = 0) -> torch.Tensor:
    """``(1, num, size, size)`` logits of random blobs made of whole patches
    (+-4, far from the binarisation at 0), each with at least one patch."""
    gen = torch.Generator().manual_seed(seed)
    cells = size // patch
    on = torch.rand(num, cells, cells, generator=gen) < 0.4
    on[torch.arange(num), torch.arange(num) % cells, torch.arange(num) // cells % cells] = True
    logits = torch.where(on, 4.0, -4.0)
    return logits.repeat_interleave(patch, 1).repeat_interleave(patch, 2)[None]


def record_linear_dtypes(module: torch.nn.Module) -> list:
    """Output dtypes of the first ``nn.Linear`` inside ``module``, as it runs."""
    linear = next(m for m in module.modules() if isinstance(m, torch.nn.Linear))
    seen = []
    linear.register_forward_hook(lambda mod, inputs, out: seen.append(out.dtype))
    return seen


@pytest.mark.parametrize('variant', list(VARIANTS))
@pytest.mark.parametrize('patch', [16, 14])
def test_bf16_region_embeddings_match_fp32(variant, patch):
    """Each region embedding under bfloat16 autocast has cosine >= 0.999 with
    its float32 value, and is closer to it than to any other region's."""
    size = 112
    torch.manual_seed(0)
    clip = make_tiny_clip(seed=2, patch_size=patch, image_size=size)
    layer = VARIANTS[variant]
    overrides = None if layer is None else {1: layer, 2: layer}
    encoder = MaskCLIPVisualEncoder(clip=clip, mask_attention_overrides=overrides)
    encoder.init_weights()
    encoder.eval()
    images = torch.randn(1, 3, size, size)
    masks = cell_masks(12, size, patch)
    ref = fp32(encoder, images, masks)
    seen = record_linear_dtypes(clip.visual)
    out = bf16(encoder, images, masks)
    assert seen and set(seen) == {torch.bfloat16}  # it really ran in bfloat16
    assert len(out.mask_logits) == (2 if layer else 0)

    # bfloat16 rounds the unit vectors (norms 1 +- 0.4%): compare directions
    got, want = F.normalize(out.region_embeds[0].float(), dim=-1), ref.region_embeds[0]
    cosine = got @ want.t()  # (M, M) cosines
    own = cosine.diagonal()
    assert own.min() >= 0.999, own
    others = cosine - 2 * torch.eye(len(cosine))
    assert (own > others.max(1).values).all()
    # the masks matter: the regions are far apart compared with bf16's error
    spread = want @ want.t() - 2 * torch.eye(len(want))
    assert spread.max() < 0.999


# ----------------------------------------------------- whole predictions --
@pytest.fixture(scope='module')
def coco(tmp_path_factory):
    """Two synthetic COCO-panoptic images and the tiny CLIP's weights file."""
    root = tmp_path_factory.mktemp('half')
    data = write_coco_panoptic(
        str(root / 'coco'), num_images=2, image_size=(64, 96), split='val2017')
    clip = make_tiny_clip(seed=3)
    # residual branches x10: regions of different content get embeddings as
    # far apart as a trained CLIP's (a random one's are all within 0.3 degrees)
    with torch.no_grad():
        for block in clip.visual.transformer.resblocks:
            block.attn.out_proj.weight.mul_(10)
            block.mlp.c_proj.weight.mul_(10)
    clip_path = str(root / 'clip.pt')
    torch.save(clip.state_dict(), clip_path)
    return data, clip_path


def gt_maskclip(data: dict, clip_path: str, layer) -> torch.nn.Module:
    """A tiny MaskCLIP proposing the ground-truth segments (logits +-2)."""
    cfg = tiny_maskclip_cfg('unused', data, clip_path, max_iters=1, rma_blocks=())
    model_cfg = copy.deepcopy(cfg.model)
    # assigned, not merged: exactly the ground truth, no random blobs
    model_cfg.proposer = ConfigDict(type='GTMaskProposer')
    overrides = None if layer is None else {1: layer, 2: layer}
    model_cfg.visual_encoder = ConfigDict(
        type='MaskCLIPVisualEncoder', mask_attention_overrides=overrides)
    model_cfg.update(head=None, void_class=None)
    init_default_scope('mmdet')
    model = MODELS.build(model_cfg)
    model.init_weights()
    return model.eval()


def oracle_vocabulary(model, batch) -> torch.Tensor:
    """Give every class the text embedding of its segments' float32 region
    embeddings (the normalised mean of their differences from the mean of all
    segments): each segment then scores its own class well above the others,
    a case whose answer is not borderline.

    Returns:
        Tensor: ``(K,)`` float32 margin of each segment (its class logit
        minus the best other one).
    """
    samples = model.data_preprocessor(copy.deepcopy(batch), False)
    vocabulary = model.vocabulary(samples['data_samples'])
    _, regions, _ = fp32(model.encode, samples['inputs'], samples['data_samples'], vocabulary)
    segments = model.gt_segments(samples['data_samples'], vocabulary)
    embeds = torch.cat([regions.region_embeds[b, :len(seg)] for b, seg in enumerate(segments)])
    labels = torch.cat([seg.labels for seg in segments])
    assert set(labels.tolist()) == set(range(vocabulary.num_classes))
    centred = embeds - embeds.mean(0)
    table = torch.stack(
        [F.normalize(centred[labels == c].mean(0), dim=-1) for c in range(vocabulary.num_classes)])
    names = {name: i for i, name in enumerate(vocabulary.text)}
    model.text_encoder.forward = lambda texts: table[[names[t] for t in texts]].clone()
    logits = model.logit_scale * embeds @ table.t()
    own = logits.gather(1, labels[:, None])[:, 0]
    return own - logits.scatter(1, labels[:, None], float('-inf')).max(1).values


def instance_set(sample, min_score: float = 0.05) -> list:
    """Instances scoring above ``min_score`` as sorted ``(label, mask bytes,
    score)``: independent of the order of equal scores."""
    inst = sample.pred_instances
    keep = inst.scores > min_score
    return sorted(
        (int(label), mask.numpy().tobytes(), float(score))
        for label, mask, score in zip(inst.labels[keep], inst.masks[keep], inst.scores[keep]))


@pytest.mark.parametrize('variant', ['wo-rma', 'rma-paper'])
def test_bf16_predictions_equal_fp32(coco, variant):
    """Panoptic, semantic and instance outputs under bfloat16 autocast equal
    float32 ones when classes are well separated (the paper-style RMA
    refiner starts at zero, so its refined masks stay far from 0 too)."""
    data, clip_path = coco
    model = gt_maskclip(data, clip_path, VARIANTS[variant])
    dataset = DATASETS.build(panoptic_dataset(data, test=True))
    batch = pseudo_collate([dataset[0], dataset[1]])
    assert oracle_vocabulary(model, batch).min() > 5  # logits; bfloat16 errs by < 1

    # float32 predicts the ground truth with a wide margin
    ref = fp32(model.test_step, copy.deepcopy(batch))
    seen = record_linear_dtypes(model.visual_encoder.clip_visual)
    out = bf16(model.test_step, copy.deepcopy(batch))
    assert seen and set(seen) == {torch.bfloat16}
    for want, got in zip(ref, out):
        gt = want.gt_sem_seg.sem_seg
        sem = want.pred_sem_seg.sem_seg
        assert (sem == gt).float().mean() > 0.95  # ground truth, almost everywhere
        assert torch.equal(got.pred_sem_seg.sem_seg, sem)
        assert torch.equal(got.pred_panoptic_seg.sem_seg, want.pred_panoptic_seg.sem_seg)
        assert len(want.pred_panoptic_seg.sem_seg.unique()) > 2
        ours, theirs = instance_set(got), instance_set(want)
        assert [i[:2] for i in ours] == [i[:2] for i in theirs] and ours
        torch.testing.assert_close(
            torch.tensor([i[2] for i in ours]),
            torch.tensor([i[2] for i in theirs]),
            atol=0.02,
            rtol=0)
