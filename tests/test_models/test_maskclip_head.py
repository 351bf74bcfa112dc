# Copyright (c) mmmaskclip contributors. All rights reserved.
"""MaskCLIPHead: matching, losses against a naive reference, edge cases."""
import inspect
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmdet.structures.mask import BitmapMasks
from mmengine.config import Config
from mmengine.structures import InstanceData

from mmmaskclip.models.heads import MaskCLIPHead
from mmmaskclip.models.heads import maskclip_head as head_module

B, M, C, H, W = 2, 6, 4, 32, 32
KEYS = {'loss_cls', 'loss_mask', 'loss_dice'}
AUX_KEYS = {'d0.loss_mask', 'd0.loss_dice', 'd1.loss_mask', 'd1.loss_dice'}


def make_head(aux_mask_loss=True, **train_cfg):
    train_cfg.setdefault('num_points', 256)
    return MaskCLIPHead(train_cfg=train_cfg, aux_mask_loss=aux_mask_loss)


def make_gt(num_gts=(3, 2), scale=1, fmt='bool', seed=0):
    """Panoptic-like GT: each image is partitioned into 8x8 blocks of segments.

    ``scale`` > 1 upsamples the masks (nearest) to ``(scale*H, scale*W)``.
    Returns the instances and the (B, K, H, W) float masks at ``(H, W)``.
    """
    g = torch.Generator().manual_seed(seed)
    insts, small = [], []
    for k in num_gts:
        seg = torch.randint(0, max(k, 1), (H // 8, W // 8), generator=g)
        seg[0, :k] = torch.arange(k)  # every segment non-empty
        seg = seg.repeat_interleave(8, 0).repeat_interleave(8, 1)
        masks = torch.stack([seg == i for i in range(k)]) if k else \
            torch.zeros(0, H, W, dtype=torch.bool)
        small.append(masks.float())
        big = masks.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
        if fmt == 'uint8':
            big = big.to(torch.uint8)
        elif fmt == 'bitmap':
            big = BitmapMasks(big.numpy().astype(np.uint8), H * scale, W * scale)
        labels = torch.randint(0, C, (k, ), generator=g)
        insts.append(InstanceData(labels=labels, masks=big))
    return insts, small


def smooth_logits(*shape, seed=0, amp=3.0):
    """Random mask logits, smooth at the pixel scale (bilinear from 8x8)."""
    g = torch.Generator().manual_seed(seed)
    low = amp * torch.randn(*shape[:-2], 8, 8, generator=g)
    return F.interpolate(
        low.reshape(-1, 1, 8, 8), size=shape[-2:], mode='bilinear',
        align_corners=False).view(*shape)


def planted(insts, small, perms, seed=1):
    """Perfect predictions: proposal perm[b][k] predicts GT k (+-10 logits, one-hot x10)."""
    cls_logits = torch.randn(B, M, C, generator=torch.Generator().manual_seed(seed))
    masks = smooth_logits(B, M, H, W, seed=seed)
    for b, (inst, perm) in enumerate(zip(insts, perms)):
        for k in range(len(inst.labels)):
            masks[b, perm[k]] = 10 * (2 * small[b][k] - 1)
            cls_logits[b, perm[k]] = 10 * F.one_hot(inst.labels[k], C).float()
    return cls_logits, masks


PERMS = ([4, 0, 2], [5, 1])


def mask2former_recipe():
    """mmdet's own Mask2Former COCO-panoptic head recipe, the reference of the defaults."""
    import mmdet
    path = osp.join(
        osp.dirname(mmdet.__file__), '.mim', 'configs', 'mask2former',
        'mask2former_r50_8xb2-lsj-50e_coco-panoptic.py')
    model = Config.fromfile(path).model
    return model.train_cfg.to_dict(), model.panoptic_head


def test_defaults_are_mask2formers_recipe():
    # The paper trains with Mask2Former's matching and losses; MaskCLIP's only
    # change is the class weight of the no-object column (void_loss_weight).
    train_cfg, m2f_head = mask2former_recipe()
    head = MODELS.build(dict(type='MaskCLIPHead'))
    assert isinstance(head, MaskCLIPHead) and len(list(head.parameters())) == 0
    assert head.train_cfg == train_cfg
    assert (head.num_points, head.oversample_ratio,
            head.importance_sample_ratio) == (train_cfg['num_points'],
                                              train_cfg['oversample_ratio'],
                                              train_cfg['importance_sample_ratio'])
    costs = [(type(c).__name__, c.weight) for c in head.assigner.match_costs]
    assert costs == [(c['type'], c['weight']) for c in train_cfg['assigner']['match_costs']]
    assert type(head.sampler).__name__ == train_cfg['sampler']['type']
    defaults = inspect.signature(MaskCLIPHead.__init__).parameters
    for name in ('loss_cls', 'loss_mask', 'loss_dice'):
        expected = m2f_head[name].to_dict()
        expected.pop('class_weight', None)
        assert defaults[name].default == expected, name
        assert getattr(head, name).loss_weight == expected['loss_weight']
    assert head.void_loss_weight == 0.0 and head.loss_cls.class_weight is None


def test_partial_train_cfg_keeps_other_defaults():
    expected = MODELS.build(dict(type='MaskCLIPHead')).train_cfg
    expected.update(num_points=256, importance_sample_ratio=0.5)
    partial = make_head(importance_sample_ratio=0.5)  # and num_points=256
    assert partial.train_cfg == expected
    assert (partial.num_points, partial.importance_sample_ratio) == (256, 0.5)


@pytest.mark.parametrize('fmt,scale', [('bool', 1), ('bitmap', 2), ('uint8', 2)])
def test_perfect_prediction_is_matched_and_cheap(fmt, scale):
    insts, small = make_gt(scale=scale, fmt=fmt)
    cls_logits, masks = planted(insts, small, PERMS)
    valid = torch.ones(B, M, dtype=torch.bool)
    # uniform points: importance sampling concentrates on the +-10 edges, where
    # bilinear sampling gives logit ~0 vs target ~0.5 (BCE at its entropy floor)
    head = make_head(importance_sample_ratio=0.0)
    torch.manual_seed(0)
    matches = head.match(cls_logits, [masks], valid, insts)
    for (props, gts), perm in zip(matches, PERMS):
        got = dict(zip(props.tolist(), gts.tolist()))
        assert got == {p: k for k, p in enumerate(perm)}

    torch.manual_seed(0)
    good = head.loss(cls_logits, [masks], valid, insts, [{}, {}])
    wrong_cls = torch.randn(B, M, C, generator=torch.Generator().manual_seed(5))
    torch.manual_seed(0)
    bad = head.loss(wrong_cls, [smooth_logits(B, M, H, W, seed=7)], valid, insts, [{}, {}])
    assert set(good) == KEYS
    for key in KEYS:
        assert torch.isfinite(good[key]) and torch.isfinite(bad[key])
        # floor: bilinear GT targets are fractional within half a pixel of edges
        assert good[key] < 0.15 * bad[key], (key, good[key], bad[key])
    assert good['loss_cls'] < 1e-2


def pixel_grid(mask_preds, num_points, *args):
    """Stand-in for the importance sampler: every pixel centre, once."""
    h, w = mask_preds.shape[-2:]
    assert num_points == h * w
    ys, xs = torch.meshgrid((torch.arange(h) + 0.5) / h, (torch.arange(w) + 0.5) / w, indexing='ij')
    grid = torch.stack([xs, ys], -1).view(1, h * w, 2)  # (x, y) normalised
    return grid.expand(mask_preds.shape[0], -1, -1).clone()


def reference_losses(cls_logits, mask_logits, matches, insts, small):
    """Naive losses on all pixels for a given assignment (weights 2 / 5 / 5)."""
    ce, bce, dice = [], [], [[] for _ in mask_logits]
    bce = [[] for _ in mask_logits]
    for b, (props, gts) in enumerate(matches):
        for p, k in zip(props.tolist(), gts.tolist()):
            logp = cls_logits[b, p] - cls_logits[b, p].exp().sum().log()
            ce.append(-logp[insts[b].labels[k]])
            t = small[b][k]
            for i, layer in enumerate(mask_logits):
                x = layer[b, p]
                bce[i].append((x.clamp(min=0) - x * t + (1 + (-x.abs()).exp()).log()).mean())
                s = 1 / (1 + (-x).exp())
                dice[i].append(1 - (2 * (s * t).sum() + 1) / (s.sum() + t.sum() + 1))
    n = max(len(ce), 1)
    out = {'loss_cls': 2 * sum(ce) / n}
    names = [f'd{i}.' for i in range(len(mask_logits) - 1)] + ['']
    for i, name in enumerate(names):
        out[name + 'loss_mask'] = 5 * sum(bce[i]) / n
        out[name + 'loss_dice'] = 5 * sum(dice[i]) / n
    return out


@pytest.mark.parametrize('fmt,scale', [('bool', 1), ('bitmap', 2), ('uint8', 1)])
def test_matches_naive_reference(monkeypatch, fmt, scale):
    monkeypatch.setattr(head_module, 'uncertain_point_coords', pixel_grid)
    insts, small = make_gt(scale=scale, fmt=fmt)
    cls_logits, final = planted(insts, small, PERMS)
    final = final * 0.3 + smooth_logits(B, M, H, W, seed=3)  # imperfect, still clear
    cls_logits = cls_logits * 0.2 + torch.randn(B, M, C)
    layers = [smooth_logits(B, M, H, W, seed=s) for s in (11, 12)] + [final]
    valid = torch.ones(B, M, dtype=torch.bool)
    head = make_head(num_points=H * W)
    # the matching's cost points are random; these masks are clear enough for
    # every draw to give the same matching, the one the loss uses
    draws = []
    for seed in range(3):
        torch.manual_seed(seed)
        draws.append([(p.tolist(), g.tolist())
                      for p, g in head.match(cls_logits, layers, valid, insts)])
    assert draws[0] == draws[1] == draws[2]
    matches = [(torch.tensor(p), torch.tensor(g)) for p, g in draws[0]]
    assert sum(len(p) for p, _ in matches) == 5
    losses = head.loss(cls_logits, layers, valid, insts, [{}, {}])
    assert set(losses) == KEYS | AUX_KEYS
    ref = reference_losses(cls_logits.double(), [x.double() for x in layers], matches, insts,
                           [[m.double() for m in s] for s in small])
    for key, value in ref.items():
        torch.testing.assert_close(losses[key].double(), value, rtol=1e-4, atol=1e-6)
    # the real sampler, uniform (importance 0) and dense, approximates the reference
    # on the smooth masks (bilinear sampling of sharp +-3 edges would bias it)
    monkeypatch.undo()
    head = make_head(num_points=8 * H * W, importance_sample_ratio=0.0)
    torch.manual_seed(0)
    approx = head.loss(cls_logits, layers, valid, insts)
    for key in ['loss_cls'] + sorted(AUX_KEYS):
        torch.testing.assert_close(approx[key].double(), ref[key], rtol=0.05, atol=1e-3)


def test_unmatched_and_invalid_proposals():
    insts, small = make_gt()
    cls_logits, masks = planted(insts, small, PERMS)
    valid = torch.ones(B, M, dtype=torch.bool)
    head = make_head()
    torch.manual_seed(0)
    base = head.loss(cls_logits, [masks], valid, insts)
    # proposal 1 of image 0 is unmatched: its logits and masks carry no loss
    cls2, masks2 = cls_logits.clone(), masks.clone()
    cls2[0, 1] = torch.tensor([50.0, -50.0, 30.0, -20.0])
    masks2[0, 1] = 7.0
    torch.manual_seed(0)
    changed = head.loss(cls2, [masks2], valid, insts)
    for key in KEYS:
        assert torch.equal(base[key], changed[key]), key
    # a matched proposal's class logits do change loss_cls (the check can fail)
    cls3 = cls_logits.clone()
    cls3[0, PERMS[0][0]] = 0.0
    torch.manual_seed(0)
    assert head.loss(cls3, [masks], valid, insts)['loss_cls'] > base['loss_cls'] + 0.1

    # perfect copy of GT 0 in slot 1, which is padded; slot 4 is only noisy
    noisy = masks.clone()
    noisy[0, 4] = 2 * (2 * small[0][0] - 1) + smooth_logits(H, W, seed=9)
    noisy[0, 1] = 10 * (2 * small[0][0] - 1)
    cls4 = cls_logits.clone()
    cls4[0, 1] = cls_logits[0, 4]
    torch.manual_seed(0)
    unpadded = head.match(cls4, noisy, valid, insts)
    assert 1 in unpadded[0][0].tolist()  # the perfect one wins when it is valid
    valid[0, 1] = False
    torch.manual_seed(0)
    padded = head.match(cls4, noisy, valid, insts)
    props, gts = padded[0]
    assert 1 not in props.tolist()
    assert dict(zip(props.tolist(), gts.tolist()))[4] == 0
    # all slots padded: no match at all, zero losses
    none = torch.zeros(B, M, dtype=torch.bool)
    assert all(len(p) == 0 for p, _ in head.match(cls4, noisy, none, insts))
    losses = head.loss(cls4, [noisy], none, insts)
    assert all(v.item() == 0 for v in losses.values())


def test_aux_losses(monkeypatch):
    monkeypatch.setattr(head_module, 'uncertain_point_coords', pixel_grid)
    insts, small = make_gt()
    cls_logits, final = planted(insts, small, PERMS)
    valid = torch.ones(B, M, dtype=torch.bool)
    layers = [final.clone(), smooth_logits(B, M, H, W, seed=4), final]
    head = make_head(num_points=H * W)  # exact: every pixel centre
    losses = head.loss(cls_logits, layers, valid, insts)
    assert set(losses) == KEYS | AUX_KEYS
    # d0 sees a copy of the final masks, d1 random ones
    for name in ('loss_mask', 'loss_dice'):
        torch.testing.assert_close(losses['d0.' + name], losses[name])
        assert losses['d0.' + name] < 0.05 * losses['d1.' + name]
    assert set(head.loss(cls_logits, [final], valid, insts)) == KEYS
    assert set(head.loss(cls_logits, final, valid, insts)) == KEYS
    no_aux = make_head(aux_mask_loss=False, num_points=H * W)
    assert set(no_aux.loss(cls_logits, layers, valid, insts)) == KEYS


@pytest.mark.parametrize('num_gts', [(3, 0), (0, 0)])
def test_empty_ground_truth(num_gts):
    insts, small = make_gt(num_gts=num_gts, fmt='bitmap')
    cls_logits, final = planted(insts, small, PERMS)
    valid = torch.ones(B, M, dtype=torch.bool)
    valid[1, 5] = False
    cls_logits[1, 5] = float('-inf')  # a padded slot holding -inf must not poison
    cls_logits.requires_grad_(True)
    layers = [smooth_logits(B, M, H, W, seed=2).requires_grad_(True), final.requires_grad_(True)]
    head = make_head()
    torch.manual_seed(0)
    losses = head.loss(cls_logits, layers, valid, insts)
    assert set(losses) == KEYS | {'d0.loss_mask', 'd0.loss_dice'}
    for value in losses.values():
        assert torch.isfinite(value) and value.grad_fn is not None
    sum(losses.values()).backward()
    assert all(torch.isfinite(t.grad).all() for t in [cls_logits, *layers])
    if sum(num_gts) == 0:
        assert all(v.item() == 0 for v in losses.values())
    else:
        # an image without GT adds nothing: same as the first image alone
        head1 = make_head()
        torch.manual_seed(0)
        alone = head1.loss(cls_logits[:1], [x[:1] for x in layers], valid[:1], insts[:1])
        for key in losses:
            assert losses[key].item() > 0
            torch.testing.assert_close(losses[key], alone[key])


def test_gradients_reach_all_inputs():
    insts, small = make_gt(fmt='bitmap', scale=2)
    cls_logits, final = planted(insts, small, PERMS)
    cls_logits = (0.3 * cls_logits).requires_grad_(True)
    layers = [smooth_logits(B, M, H, W, seed=s).requires_grad_(True) for s in (5, 6)]
    layers.append((0.3 * final).requires_grad_(True))
    valid = torch.ones(B, M, dtype=torch.bool)
    valid[0, 1] = False
    head = make_head()
    torch.manual_seed(0)
    losses = head.loss(cls_logits, layers, valid, insts)
    sum(losses.values()).backward()
    matched = torch.zeros(B, M, dtype=torch.bool)
    for b, perm in enumerate(PERMS):
        matched[b, perm] = True
    for t in [cls_logits, *layers]:
        per_prop = t.grad.flatten(2).abs().sum(-1)
        assert (per_prop[matched] > 0).all()
        assert (per_prop[~matched] == 0).all()  # unmatched and padded: no gradient


def test_void_column_trains_as_the_authors():
    """With a void ('other') column, the class loss is the authors' (and
    detectron2 Mask2Former's) ``F.cross_entropy(logits, targets, weight)``:
    softmax over C + 1 columns, unmatched proposals targeting void with
    weight ``void_loss_weight`` (0), a weighted mean."""
    insts, small = make_gt()
    cls_logits, masks = planted(insts, small, PERMS)
    cls_void = torch.cat([cls_logits * 0.3, torch.randn(B, M, 1)], -1)  # C + 1 columns
    valid = torch.ones(B, M, dtype=torch.bool)
    valid[1, 3] = False  # a padded slot is not a proposal at all
    for void_weight in (0.0, 0.1):
        head = MaskCLIPHead(train_cfg=dict(num_points=256), void_loss_weight=void_weight)
        torch.manual_seed(0)
        matches = head.match(cls_void, [masks], valid, insts)
        torch.manual_seed(0)
        losses = head.loss(cls_void, [masks], valid, insts, has_void=True)
        targets = torch.full((B, M), C)
        for b, (props, gts) in enumerate(matches):
            targets[b, props] = insts[b].labels[gts]
        weight = torch.ones(C + 1)
        weight[-1] = void_weight
        ref = 2.0 * F.cross_entropy(cls_void[valid], targets[valid], weight)
        torch.testing.assert_close(losses['loss_cls'], ref)
    # the void logit is in the normaliser: the loss differs from C columns
    torch.manual_seed(0)
    without = make_head().loss(cls_void[..., :C], [masks], valid, insts)
    assert abs(without['loss_cls'] - losses['loss_cls']) > 1e-3


def test_maskclip_trains_with_the_void_column(tiny_clip):
    """The detector's class logits in training have the void column too (as
    at test time), and the head is told so."""
    from mmdet.structures import DetDataSample

    from mmmaskclip.models import MaskCLIP
    seen = {}
    for void in ('other', None):
        model = MaskCLIP(
            clip=tiny_clip,
            proposer=dict(type='GTMaskProposer'),
            class_names=['a', 'b', 'c'],
            num_things_classes=3,
            void_class=void,
            head=dict(type='MaskCLIPHead', train_cfg=dict(num_points=64)))
        loss = model.head.loss

        def spy(cls_logits, *args, **kwargs):
            seen[void] = (cls_logits.shape[-1], kwargs['has_void'])
            return loss(cls_logits, *args, **kwargs)

        model.head.loss = spy
        mask = np.zeros((1, 64, 64), np.uint8)
        mask[:, 8:40, 8:40] = 1
        sample = DetDataSample(metainfo=dict(img_shape=(64, 64), batch_input_shape=(64, 64)))
        sample.gt_instances = InstanceData(
            labels=torch.tensor([1]), masks=BitmapMasks(mask, 64, 64))
        model.loss(torch.rand(1, 3, 64, 64) * 255, [sample])
    assert seen == {'other': (4, True), None: (3, False)}


@pytest.mark.parametrize('low', [(21, 21), (12, 20)])
def test_low_resolution_masks_lose_as_upsampled(low):
    """Masks at the encoder resolution with ``mask_size`` give the losses of
    their bilinear upsampling to the padded batch (never materialised)."""
    insts, small = make_gt(scale=2)
    size = (2 * H, 2 * W)
    cls_logits = torch.randn(B, M, C, generator=torch.Generator().manual_seed(3))
    layers = [smooth_logits(B, M, *low, seed=s) for s in (1, 2)]
    up = [F.interpolate(x, size=size, mode='bilinear', align_corners=False) for x in layers]
    valid = torch.ones(B, M, dtype=torch.bool)
    head = make_head()
    torch.manual_seed(0)
    lazy = head.loss(cls_logits, layers, valid, insts, mask_size=size)
    torch.manual_seed(0)
    full = head.loss(cls_logits, up, valid, insts)
    assert set(lazy) == KEYS | {'d0.loss_mask', 'd0.loss_dice'}
    for key in full:
        torch.testing.assert_close(lazy[key], full[key], rtol=1e-5, atol=1e-6)


def test_model_train_cfg_is_refused(tiny_clip):
    from mmmaskclip.models import MaskCLIP
    with pytest.raises(ValueError, match='head.train_cfg'):
        MaskCLIP(
            clip=tiny_clip, proposer=dict(type='GTMaskProposer'), train_cfg=dict(num_points=64))
