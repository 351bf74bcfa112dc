# Copyright (c) mmmaskclip contributors. All rights reserved.
"""tools/model_converters/maskclip_official_to_mmmaskclip.py on synthetic checkpoints.

The source side (key names, shapes) comes from ``official_state_dicts`` (written from the
detectron2 / Mask2Former / CLIP module definitions, not from mmdet). The converted weights
are checked by function: the mmdet Mask2Former must reproduce a detectron2-style forward
written here from the source tensors, and the MaskCLIP visual encoder must reproduce an
independent implementation of the authors' visual transformer (design notes §3).
"""
import math
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from conftest import REPO, TEXT_CFG, load_script
from official_state_dicts import (RMA_BLOCKS, official_maskclip_state_dict,
                                  official_proposer_state_dict)

CONVERTER = 'tools/model_converters/maskclip_official_to_mmmaskclip.py'
CONFIG = osp.join(REPO, 'configs/proposals/mask2former_r50_maskclip-official_class-agnostic.py')
RMA_OUT = 'maskclip-official_vit-l-14-336_coco-panoptic_converted.pth'
PROPOSER_OUT = 'mask2former_r50_maskclip-official_class-agnostic_converted.pth'
D2 = 'sem_seg_head.pixel_decoder.'
PRED = 'sem_seg_head.predictor.'


@pytest.fixture(scope='module')
def converter():
    return load_script(CONVERTER)


@pytest.fixture(scope='module')
def tiny_clip24():
    """open_clip CLIP with a 24-block ViT (width 32, 2 heads, patch 14, 42 px), QuickGELU
    as OpenAI's, float64, every parameter perturbed (no identity LayerNorm)."""
    import open_clip
    torch.manual_seed(0)
    model = open_clip.CLIP(
        embed_dim=16,
        quick_gelu=True,
        text_cfg=dict(TEXT_CFG),
        vision_cfg=dict(image_size=42, layers=24, width=32, patch_size=14, head_width=16))
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    return model.double().eval()


def clip_visual(clip):
    return {k[len('visual.'):]: v for k, v in clip.state_dict().items() if k.startswith('visual.')}


def small_proposer(**kwargs):
    """A few-channel detectron2 proposer (names as the real one; quick key-level tests)."""
    return official_proposer_state_dict(
        stem=8, dim=32, enc_layers=1, dec_layers=2, queries=4, blocks=(1, 1, 2, 1), **kwargs)


def run(converter, tmp_path, source, *extra, wrap='model', name='model_final.pth'):
    """Save ``source`` (wrapped as detectron2 does) and convert it into tmp_path/out."""
    src = str(tmp_path / name)
    torch.save({wrap: source} if wrap else source, src)
    out = tmp_path / 'out'
    return converter.main([src, str(out), *extra]), out


def load(path):
    return torch.load(str(path), map_location='cpu', weights_only=True)


# ------------------------------------------------------------- proposer, full size
@pytest.fixture(scope='module')
def proposer(converter):
    """mmdet Mask2Former from the shipped config + the converted synthetic checkpoint."""
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import mmmaskclip  # noqa: F401
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(CONFIG).model).eval()
    source = official_proposer_state_dict(seed=1)
    # in-process (the CLI and the file layouts are tested on small dicts below)
    state, num_added = converter.convert_proposer(source)
    assert num_added == 53  # stem + 16 blocks x 3 + 4 shortcuts
    return model, source, state


def test_proposer_loads_with_only_the_class_head_missing(proposer):
    model, _, state = proposer
    result = model.load_state_dict(state, strict=False)
    assert sorted(
        result.missing_keys) == ['panoptic_head.cls_embed.bias', 'panoptic_head.cls_embed.weight']
    assert result.unexpected_keys == []


def test_proposer_tensors_are_the_source_tensors(proposer):
    """Every converted tensor is one source tensor (none lost, none duplicated), plus zero
    ``num_batches_tracked``; a sample of named pairs by value."""
    _, source, state = proposer
    by_value = {(tuple(v.shape), tuple(v.flatten()[:3].tolist())): k for k, v in source.items()}
    matched = []
    for key, value in state.items():
        if key.endswith('num_batches_tracked'):
            assert value.dtype == torch.long and value.item() == 0
            continue
        src = by_value[(tuple(value.shape), tuple(value.flatten()[:3].tolist()))]
        assert torch.equal(value, source[src]), key
        matched.append(src)
    assert sorted(matched) == sorted(set(source) - {'criterion.empty_weight'})
    bns = [k for k in state if k.endswith('running_var')]
    assert len(bns) == 53
    assert all(k.replace('running_var', 'num_batches_tracked') in state for k in bns)
    pairs = {
        'backbone.stem.conv1.norm.running_var': 'backbone.bn1.running_var',
        'backbone.res2.0.shortcut.norm.running_mean': 'backbone.layer1.0.downsample.1.running_mean',
        'backbone.res4.5.conv2.weight': 'backbone.layer3.5.conv2.weight',
        'backbone.res5.2.conv3.norm.weight': 'backbone.layer4.2.bn3.weight',
        D2 + 'input_proj.0.0.weight': 'panoptic_head.pixel_decoder.input_convs.0.conv.weight',
        D2 + 'transformer.level_embed': 'panoptic_head.pixel_decoder.level_encoding.weight',
        D2 + 'transformer.encoder.layers.3.norm2.bias':
        'panoptic_head.pixel_decoder.encoder.layers.3.norms.1.bias',
        D2 + 'layer_1.norm.weight': 'panoptic_head.pixel_decoder.output_convs.0.gn.weight',
        PRED + 'transformer_cross_attention_layers.4.norm.weight':
        'panoptic_head.transformer_decoder.layers.4.norms.0.weight',
        PRED + 'transformer_self_attention_layers.8.norm.bias':
        'panoptic_head.transformer_decoder.layers.8.norms.1.bias',
        PRED + 'transformer_ffn_layers.0.norm.weight':
        'panoptic_head.transformer_decoder.layers.0.norms.2.weight',
        PRED + 'decoder_norm.weight': 'panoptic_head.transformer_decoder.post_norm.weight',
        PRED + 'level_embed.weight': 'panoptic_head.level_embed.weight',
        PRED + 'mask_embed.layers.2.bias': 'panoptic_head.mask_embed.4.bias',
    }
    for src, dst in pairs.items():
        assert torch.equal(state[dst], source[src]), (src, dst)


# detectron2-style reference forward, from the source tensors only -------------------
def _frozen_bn(x, sd, p):
    return F.batch_norm(x, sd[p + 'running_mean'], sd[p + 'running_var'], sd[p + 'weight'],
                        sd[p + 'bias'], False, 0.0, 1e-5)


def _conv_bn(x, sd, p, stride=1, padding=0):
    return _frozen_bn(F.conv2d(x, sd[p + '.weight'], None, stride, padding), sd, p + '.norm.')


def ref_resnet(sd, x):
    """detectron2 ResNet-50, stride in the 3x3 conv: res2..res5."""
    x = F.max_pool2d(F.relu(_conv_bn(x, sd, 'backbone.stem.conv1', 2, 3)), 3, 2, 1)
    feats = []
    for stage, num in zip(range(2, 6), (3, 4, 6, 3)):
        for i in range(num):
            p = f'backbone.res{stage}.{i}'
            stride = 2 if stage > 2 and i == 0 else 1
            y = F.relu(_conv_bn(x, sd, p + '.conv1'))
            y = F.relu(_conv_bn(y, sd, p + '.conv2', stride, 1))
            y = _conv_bn(y, sd, p + '.conv3')
            x = F.relu(y + (_conv_bn(x, sd, p + '.shortcut', stride) if i == 0 else x))
        feats.append(x)
    return feats


def _lin(x, sd, p):
    return F.linear(x, sd[p + '.weight'], sd[p + '.bias'])


def _ln(x, sd, p):
    return F.layer_norm(x, x.shape[-1:], sd[p + '.weight'], sd[p + '.bias'], 1e-5)


def sine_pos(h, w, num=128):
    """DETR/Mask2Former PositionEmbeddingSine(num, normalize=True), (2num, h, w); float32."""
    y = torch.arange(1, h + 1, dtype=torch.float32)[:, None].expand(h, w)
    x = torch.arange(1, w + 1, dtype=torch.float32)[None].expand(h, w)
    y, x = y / (h + 1e-6) * 2 * math.pi, x / (w + 1e-6) * 2 * math.pi
    dim_t = 10000**(2 * (torch.arange(num, dtype=torch.float32) // 2) / num)

    def enc(v):
        v = v[..., None] / dim_t
        return torch.stack((v[..., 0::2].sin(), v[..., 1::2].cos()), dim=-1).flatten(-2)

    return torch.cat((enc(y), enc(x)), dim=-1).permute(2, 0, 1).double()


def ms_deform_attn(sd, p, query, value_in, ref, shapes, heads=8, points=4):
    """Deformable DETR's MSDeformAttn (bilinear sampling, zero padding)."""
    b, nq, c = query.shape
    levels = len(shapes)
    value = _lin(value_in, sd, p + 'value_proj').view(b, -1, heads, c // heads)
    off = _lin(query, sd, p + 'sampling_offsets').view(b, nq, heads, levels, points, 2)
    att = _lin(query, sd, p + 'attention_weights').view(b, nq, heads, levels * points)
    att = att.softmax(-1).view(b, nq, heads, levels, points)
    norm = torch.tensor([[w, h] for h, w in shapes], dtype=query.dtype)
    loc = ref[:, :, None, None, None, :] + off / norm[None, None, None, :, None, :]
    out, start = 0, 0
    for lvl, (h, w) in enumerate(shapes):
        v = value[:, start:start + h * w].permute(0, 2, 3, 1).reshape(b * heads, -1, h, w)
        start += h * w
        grid = 2 * loc[:, :, :, lvl].transpose(1, 2).reshape(b * heads, nq, points, 2) - 1
        s = F.grid_sample(v, grid, mode='bilinear', padding_mode='zeros', align_corners=False)
        out = out + (s *
                     att[:, :, :, lvl].transpose(1, 2).reshape(b * heads, 1, nq, points)).sum(-1)
    return _lin(out.view(b, c, nq).transpose(1, 2), sd, p + 'output_proj')


def ref_pixel_decoder(sd, feats):
    """MSDeformAttnPixelDecoder: encoder over res5, res4, res3 (input_proj / level_embed
    index 0 = res5), one FPN level on res2; returns mask features and 3 scales."""
    srcs, poss, shapes = [], [], []
    for k, f in enumerate(reversed(feats[1:])):
        y = F.conv2d(f, sd[D2 + f'input_proj.{k}.0.weight'], sd[D2 + f'input_proj.{k}.0.bias'])
        y = F.group_norm(y, 32, sd[D2 + f'input_proj.{k}.1.weight'],
                         sd[D2 + f'input_proj.{k}.1.bias'])
        h, w = y.shape[-2:]
        shapes.append((h, w))
        srcs.append(y.flatten(2).transpose(1, 2))
        pos = sine_pos(h, w).flatten(1).t() + sd[D2 + 'transformer.level_embed'][k]
        poss.append(pos[None].expand(y.shape[0], -1, -1))
    src, pos = torch.cat(srcs, 1), torch.cat(poss, 1)
    ref = torch.cat([
        torch.stack(
            torch.meshgrid((torch.arange(w) + 0.5) / w, (torch.arange(h) + 0.5) / h, indexing='xy'),
            -1).reshape(-1, 2) for h, w in shapes
    ]).double()[None]
    for i in range(6):
        p = D2 + f'transformer.encoder.layers.{i}.'
        src = _ln(src + ms_deform_attn(sd, p + 'self_attn.', src + pos, src, ref, shapes), sd,
                  p + 'norm1')
        ffn = _lin(F.relu(_lin(src, sd, p + 'linear1')), sd, p + 'linear2')
        src = _ln(src + ffn, sd, p + 'norm2')
    outs, start = [], 0
    for h, w in shapes:
        outs.append(src[:, start:start + h * w].transpose(1, 2).reshape(src.shape[0], -1, h, w))
        start += h * w
    y = F.group_norm(
        F.conv2d(feats[0], sd[D2 + 'adapter_1.weight']), 32, sd[D2 + 'adapter_1.norm.weight'],
        sd[D2 + 'adapter_1.norm.bias'])
    y = y + F.interpolate(outs[-1], size=y.shape[-2:], mode='bilinear', align_corners=False)
    y = F.conv2d(y, sd[D2 + 'layer_1.weight'], padding=1)
    outs.append(
        F.relu(F.group_norm(y, 32, sd[D2 + 'layer_1.norm.weight'], sd[D2 + 'layer_1.norm.bias'])))
    mask_features = F.conv2d(outs[-1], sd[D2 + 'mask_features.weight'],
                             sd[D2 + 'mask_features.bias'])
    return mask_features, outs[:3]


def _mha(sd, p, q, k, v, mask=None):
    return F.multi_head_attention_forward(
        q,
        k,
        v,
        q.shape[-1],
        8,
        sd[p + 'in_proj_weight'],
        sd[p + 'in_proj_bias'],
        None,
        None,
        False,
        0.0,
        sd[p + 'out_proj.weight'],
        sd[p + 'out_proj.bias'],
        training=False,
        need_weights=False,
        attn_mask=mask)[0]


def ref_decoder(sd, mask_features, scales):
    """MultiScaleMaskedTransformerDecoder (post-norm; cross-attention, self-attention, FFN):
    mask logits after the learnable queries and after each of the 9 layers."""
    b = mask_features.shape[0]
    srcs = [
        s.flatten(2).permute(2, 0, 1) + sd[PRED + 'level_embed.weight'][i]
        for i, s in enumerate(scales)
    ]
    poss = [sine_pos(*s.shape[-2:]).flatten(1).t()[:, None].expand(-1, b, -1) for s in scales]
    query_pos = sd[PRED + 'query_embed.weight'][:, None].expand(-1, b, -1)
    out = sd[PRED + 'query_feat.weight'][:, None].expand(-1, b, -1)

    def heads(out, size):
        x = _ln(out, sd, PRED + 'decoder_norm').transpose(0, 1)
        for i in range(3):
            x = _lin(x, sd, PRED + f'mask_embed.layers.{i}')
            x = F.relu(x) if i < 2 else x
        masks = torch.einsum('bqc,bchw->bqhw', x, mask_features)
        att = F.interpolate(masks, size=size, mode='bilinear', align_corners=False)
        att = (att.sigmoid().flatten(2) < 0.5)[:, None].expand(-1, 8, -1, -1).flatten(0, 1)
        return masks, att

    masks, att = heads(out, scales[0].shape[-2:])
    preds = [masks]
    for i in range(9):
        lvl = i % 3
        att = att.clone()
        att[att.all(-1)] = False
        p = PRED + f'transformer_cross_attention_layers.{i}.'
        out = _ln(
            out +
            _mha(sd, p + 'multihead_attn.', out + query_pos, srcs[lvl] + poss[lvl], srcs[lvl], att),
            sd, p + 'norm')
        p = PRED + f'transformer_self_attention_layers.{i}.'
        out = _ln(out + _mha(sd, p + 'self_attn.', out + query_pos, out + query_pos, out), sd,
                  p + 'norm')
        p = PRED + f'transformer_ffn_layers.{i}.'
        out = _ln(out + _lin(F.relu(_lin(out, sd, p + 'linear1')), sd, p + 'linear2'), sd,
                  p + 'norm')
        masks, att = heads(out, scales[(i + 1) % 3].shape[-2:])
        preds.append(masks)
    return preds


def test_proposer_forward_matches_detectron2_reference(proposer):
    """Backbone features, pixel decoder and all 10 mask predictions of the converted mmdet
    model equal the detectron2-style forward on the source tensors (float64): catches any
    swapped norm, reversed level or misplaced tensor."""
    from mmdet.structures import DetDataSample
    model, source, state = proposer
    model.load_state_dict(state, strict=False)
    model = model.double()
    sd = {k: v.double() for k, v in source.items()}
    torch.manual_seed(0)
    x = torch.randn(1, 3, 64, 96, dtype=torch.float64)
    with torch.no_grad():
        feats = model.extract_feat(x)
        ref_feats = ref_resnet(sd, x)
        for got, ref in zip(feats, ref_feats):
            torch.testing.assert_close(got, ref, rtol=1e-7, atol=1e-7)
        mask_features, scales = model.panoptic_head.pixel_decoder(feats)
        ref_mask_features, ref_scales = ref_pixel_decoder(sd, ref_feats)
        for got, ref in zip([mask_features] + scales, [ref_mask_features] + ref_scales):
            torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6)
        sample = DetDataSample(
            metainfo=dict(img_shape=(64, 96), pad_shape=(64, 96), batch_input_shape=(64, 96)))
        _, mask_preds = model.panoptic_head(feats, [sample])
        ref_preds = ref_decoder(sd, ref_mask_features, ref_scales)
    assert len(mask_preds) == len(ref_preds) == 10
    for got, ref in zip(mask_preds, ref_preds):
        torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6)


# -------------------------------------------------------------------- RMA layers
def ref_maskclip_visual(sd, images, masks, heads):
    """The authors' MaskCLIP visual transformer (design notes §3), from the source keys.

    Tokens: M mask tokens, the class token, N patches; mask tokens start as the class
    token after the positional embedding and ln_pre. Nobody attends mask tokens; mask
    token i attends the class token and the patches where max-pooled sigmoid(mask) >= 0.5.
    RMA blocks (``q_prime_norm_added_params`` present): A' added to the mask->patch logits
    and that block halved; f_r refines the masks, which feed the later blocks.

    Returns:
        tuple[Tensor, list[Tensor]]: L2-normalised embeddings (B, M, E); refined masks.
    """
    v = 'maskclip.visual.'
    patch = sd[v + 'conv1.weight'].shape[-1]
    b, m = masks.shape[:2]
    x = F.conv2d(images, sd[v + 'conv1.weight'], stride=patch).flatten(2).transpose(1, 2)
    n, width = x.shape[1:]
    d = width // heads
    x = torch.cat([sd[v + 'class_embedding'].expand(b, 1, -1), x], 1)
    x = _ln(x + sd[v + 'positional_embedding'], sd, v + 'ln_pre')
    x = torch.cat([x[:, :1].expand(-1, m, -1), x], 1)
    t = m + 1 + n
    refined = []
    for blk in range(24):
        p = f'{v}transformer.resblocks.{blk}.'
        covered = F.max_pool2d((masks.sigmoid() >= 0.5).double(), patch).flatten(2) > 0
        allowed = torch.zeros(b, t, t, dtype=torch.bool)
        allowed[:, :, m:] = True
        allowed[:, :m, m + 1:] = covered
        y = _ln(x, sd, p + 'ln_1')
        q, k, val = (
            z.view(b, t, heads, d).transpose(1, 2)
            for z in F.linear(y, sd[p +
                                    'attn.in_proj_weight'], sd[p +
                                                               'attn.in_proj_bias']).chunk(3, -1))
        q = q / math.sqrt(d)
        logits = q @ k.transpose(-1, -2)  # B h T T
        rma = p + 'attn.q_prime_norm_added_params.weight' in sd
        if rma:
            j = blk // 6
            c1 = f'{v}transformer.conv1_added_params.{j}'
            f2 = F.conv2d(
                masks.tanh().reshape(b * m, 1, *masks.shape[-2:]),
                sd[c1 + '.weight'],
                sd[c1 + '.bias'],
                stride=patch)
            f2 = f2.view(b, m, width, n).transpose(2, 3)  # B M N W
            q_m = _ln(f2, sd, p + 'attn.q_prime_norm_added_params').view(b, m, n, heads, d)
            k_m = _lin(y[:, m + 1:], sd, p + 'attn.k_prime_proj_weight_added_params')
            rel = torch.einsum('bmnhd,bnhd->bhmn', q_m, k_m.view(b, n, heads, d)) / math.sqrt(d)
            logits[:, :, :m, m + 1:] = (logits[:, :, :m, m + 1:] + rel) / 2
            # f_r: QuickGELU(q_scaled * k) -> 1x1 conv -> pixel shuffle by the patch size
            q_all = q[:, :, :m].transpose(1, 2).reshape(b, m, 1, width)
            k_all = k[:, :, m + 1:].transpose(1, 2).reshape(b, 1, n, width)
            prod = q_all * k_all
            prod = (prod * torch.sigmoid(1.702 * prod)).permute(0, 1, 3, 2)  # B M W N
            grid = (masks.shape[-2] // patch, masks.shape[-1] // patch)
            c3 = f'{v}transformer.conv3_added_params.{j}'
            res = F.conv2d(prod.reshape(b * m, width, *grid), sd[c3 + '.weight'], sd[c3 + '.bias'])
            res = F.pixel_shuffle(res, patch).view(b, m, *masks.shape[-2:])
        logits = logits.masked_fill(~allowed[:, None], float('-inf'))
        att = (logits.softmax(-1) @ val).transpose(1, 2).reshape(b, t, width)
        x = x + _lin(att, sd, p + 'attn.out_proj')
        h = _lin(_ln(x, sd, p + 'ln_2'), sd, p + 'mlp.c_fc')
        x = x + _lin(h * torch.sigmoid(1.702 * h), sd, p + 'mlp.c_proj')
        if rma:
            masks = masks + res
            refined.append(masks)
    out = _ln(x[:, :m], sd, v + 'ln_post') @ sd[v + 'proj']
    return F.normalize(out, dim=-1), refined


@pytest.fixture(scope='module')
def rma_case(converter, tiny_clip24, tmp_path_factory):
    """Synthetic maskclip.visual.* converted with --clip-weights."""
    tmp = tmp_path_factory.mktemp('rma')
    source = official_maskclip_state_dict(clip_visual(tiny_clip24), seed=2)
    clip_file = str(tmp / 'open_clip_pytorch_model.bin')
    torch.save(tiny_clip24.state_dict(), clip_file)
    rc, out = run(converter, tmp, source, '--clip-weights', clip_file)
    assert rc == 0
    assert not (out / PROPOSER_OUT).exists()
    return source, load(out / RMA_OUT)


@pytest.mark.parametrize('impl', ['naive', 'fast'])
def test_rma_checkpoint_reproduces_the_authors_visual_transformer(rma_case, tiny_clip24, impl):
    from mmmaskclip.models import MaskCLIPVisualEncoder
    source, converted = rma_case
    state = converted['state_dict']
    assert {k.split('.')[2] for k in state} == {str(b) for b in RMA_BLOCKS}
    rma = dict(type='RelativeMaskAttention', style='official', impl=impl, chunk_size=2)
    encoder = MaskCLIPVisualEncoder(
        clip=tiny_clip24, mask_attention_overrides={b: rma
                                                    for b in RMA_BLOCKS})
    prefix = 'visual_encoder.mask_attention.'
    assert all(k.startswith(prefix) for k in state)
    encoder.mask_attention.load_state_dict({
        k[len(prefix):]: v
        for k, v in state.items()
    },
                                           strict=True)
    encoder = encoder.double().eval()
    gen = torch.Generator().manual_seed(3)
    images = torch.randn(2, 3, 42, 42, generator=gen, dtype=torch.float64)
    # blocks of 7 px (4 per patch) -> some patches covered, some not; pixel noise for f2
    masks = F.interpolate(
        torch.randn(2, 3, 6, 6, generator=gen, dtype=torch.float64) - 1,
        size=(42, 42)) + 0.3 * torch.randn(
            2, 3, 42, 42, generator=gen, dtype=torch.float64)
    masks[1, 2] = -5.0  # an empty mask: the class token only
    masks = masks.float().double()  # the encoder reads masks in float32
    with torch.no_grad():
        out = encoder(images, masks)
        ref_embeds, ref_masks = ref_maskclip_visual(source, images, masks, heads=2)
    assert len(out.mask_logits) == len(ref_masks) == 4
    for got, ref in zip(out.mask_logits, ref_masks):
        torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out.region_embeds, ref_embeds, rtol=1e-6, atol=1e-6)
    # the RMA layers matter: the plain encoder gives other embeddings
    plain = MaskCLIPVisualEncoder(clip=tiny_clip24).double()
    with torch.no_grad():
        assert not torch.allclose(plain(images, masks).region_embeds, ref_embeds, atol=1e-3)


def test_rma_meta_and_names(rma_case):
    source, converted = rma_case
    meta, state = converted['meta'], converted['state_dict']
    assert meta['rma_blocks'] == list(RMA_BLOCKS) and 'equal to' in meta['clip_check']
    t = 'maskclip.visual.transformer.'
    assert torch.equal(state['visual_encoder.mask_attention.17.mask_patch_embed.weight'],
                       source[t + 'conv1_added_params.2.weight'])
    assert torch.equal(state['visual_encoder.mask_attention.23.refiner.1.bias'],
                       source[t + 'conv3_added_params.3.bias'])
    assert torch.equal(state['visual_encoder.mask_attention.5.query_proj_m.weight'],
                       source[t + 'resblocks.5.attn.q_prime_norm_added_params.weight'])
    assert torch.equal(state['visual_encoder.mask_attention.11.key_proj_m.weight'],
                       source[t + 'resblocks.11.attn.k_prime_proj_weight_added_params.weight'])
    assert len(state) == 32  # 4 blocks x (f2, phi_Qm, phi_Km, f_r) x (weight, bias)


# --------------------------------------------------------------- CLI and errors
@pytest.fixture(scope='module')
def full_source(tiny_clip24):
    """model_final.pth-like: small proposer + CLIP + RMA + criterion.empty_weight."""
    return dict(small_proposer(), **official_maskclip_state_dict(clip_visual(tiny_clip24)))


def test_cli_happy_path_and_summary(converter, full_source, tmp_path, capsys):
    rc, out = run(converter, tmp_path, full_source)
    assert rc == 0
    stdout = capsys.readouterr().out
    assert f'32 RMA tensors (blocks 5, 11, 17, 23) -> {out / RMA_OUT}' in stdout
    num_clip = sum(
        k.startswith('maskclip.visual.') and 'added_params' not in k for k in full_source)
    assert f'skipped {num_clip} CLIP weights' in stdout and 'no --clip-weights' in stdout
    assert 'skipped criterion.empty_weight (training loss weight)' in stdout
    prop = load(out / PROPOSER_OUT)['state_dict']
    num_prop = sum(k.startswith(('backbone.', 'sem_seg_head.')) for k in full_source)
    num_bn = sum(k.endswith('running_mean') for k in full_source)
    assert f'{num_prop} Mask2Former tensors (+{num_bn} zero num_batches_tracked) -> ' \
           f'{out / PROPOSER_OUT}' in stdout
    assert len(prop) == num_prop + num_bn
    # refuses to overwrite without --force
    rc, _ = run(converter, tmp_path, full_source)
    assert rc == 1 and 'pass --force' in capsys.readouterr().err
    rc, _ = run(converter, tmp_path, full_source, '--force')
    assert rc == 0


@pytest.mark.parametrize('wrap', ['model', 'state_dict', None])
def test_proposer_only_layouts(converter, tmp_path, wrap):
    """mask_proposal_network.pth (proposer keys only) -> only the mmdet checkpoint."""
    rc, out = run(
        converter, tmp_path, small_proposer(), wrap=wrap, name='mask_proposal_network.pth')
    assert rc == 0 and (out / PROPOSER_OUT).exists() and not (out / RMA_OUT).exists()
    meta = load(out / PROPOSER_OUT)['meta']
    assert meta['source_layout'] == {'model': 'detectron2'}.get(wrap, wrap or 'bare')
    assert meta['converted_from'] == 'mask_proposal_network.pth'
    assert meta['config'].endswith(osp.basename(CONFIG))


@pytest.mark.parametrize('extra', [
    'sem_seg_head.predictor.extra_proj.weight', 'maskclip.visual.transformer.resblocks.5.'
    'attn.v_prime_added_params.weight', 'backbone.res6.0.conv1.weight', 'maskclip.logit_scale'
])
def test_unknown_key_is_an_error(converter, full_source, tmp_path, capsys, extra):
    rc, out = run(converter, tmp_path, dict(full_source, **{extra: torch.zeros(1)}))
    err = capsys.readouterr().err
    assert rc == 1 and extra in err and 'neither mapped' in err and '\n' not in err.strip()
    assert not out.exists()


@pytest.mark.parametrize(
    'drop,message',
    [('maskclip.visual.transformer.conv3_added_params.3.', 'block 23 (conv index 3) lacks '
      'conv3.bias, conv3.weight'),
     ('maskclip.visual.transformer.resblocks.11.attn.k_prime', 'block 11 (conv index 1) lacks '
      'k_prime_proj_weight.bias, k_prime_proj_weight.weight')])
def test_incomplete_rma_is_an_error(converter, full_source, tmp_path, capsys, drop, message):
    source = {k: v for k, v in full_source.items() if not k.startswith(drop)}
    rc, _ = run(converter, tmp_path, source)
    assert rc == 1 and message in capsys.readouterr().err


def test_class_embed_maps_when_it_fits(converter, tmp_path, capsys):
    source = small_proposer()
    source[PRED + 'class_embed.weight'] = torch.randn(2, 32)
    source[PRED + 'class_embed.bias'] = torch.randn(2)
    rc, out = run(converter, tmp_path, source)
    state = load(out / PROPOSER_OUT)['state_dict']
    assert rc == 0 and torch.equal(state['panoptic_head.cls_embed.bias'],
                                   source[PRED + 'class_embed.bias'])
    source[PRED + 'class_embed.weight'] = torch.randn(134, 32)
    rc, _ = run(converter, tmp_path, source, '--force')
    assert rc == 1 and 'class_embed has shape (134, 32)' in capsys.readouterr().err


def test_clip_weights_check(converter, full_source, tiny_clip24, tmp_path, capsys):
    clip_state = tiny_clip24.state_dict()
    good = str(tmp_path / 'good.bin')
    torch.save(clip_state, good)
    rc, _ = run(converter, tmp_path, full_source, '--clip-weights', good)
    assert rc == 0 and f'equal to {good}' in capsys.readouterr().out
    from safetensors.torch import save_file  # open_clip_model.safetensors works too
    good = str(tmp_path / 'good.safetensors')
    save_file({k: v.contiguous() for k, v in clip_state.items()}, good)
    rc, _ = run(converter, tmp_path, full_source, '--force', '--clip-weights', good)
    assert rc == 0 and f'equal to {good}' in capsys.readouterr().out
    bad = dict(clip_state)
    bad['visual.transformer.resblocks.3.ln_2.bias'] = bad[
        'visual.transformer.resblocks.3.ln_2.bias'] + 1e-6
    torch.save(bad, str(tmp_path / 'bad.bin'))
    rc, _ = run(converter, tmp_path, full_source, '--force', '--clip-weights',
                str(tmp_path / 'bad.bin'))
    err = capsys.readouterr().err
    assert rc == 1 and '1 CLIP tensors differ' in err
    assert 'maskclip.visual.transformer.resblocks.3.ln_2.bias' in err
    del bad['visual.proj']
    torch.save(bad, str(tmp_path / 'bad.bin'))
    rc, _ = run(converter, tmp_path, full_source, '--force', '--clip-weights',
                str(tmp_path / 'bad.bin'))
    assert rc == 1 and 'no visual.* counterpart' in capsys.readouterr().err


def test_unreadable_inputs(converter, tmp_path, capsys):
    out = str(tmp_path / 'out')
    assert converter.main([str(tmp_path / 'missing.pth'), out]) == 1
    assert 'No such file' in capsys.readouterr().err
    (tmp_path / 'notes.txt').write_text('not a checkpoint')
    assert converter.main([str(tmp_path / 'notes.txt'), out]) == 1
    assert 'not a readable PyTorch checkpoint' in capsys.readouterr().err
    for obj, message in (([1, 2], 'holds a list'), ({
            'iteration': 3
    }, 'Unrecognised'), ({
            'model': {
                'head.weight': torch.ones(1)
            }
    }, 'neither mapped'), ({
            'model': {}
    }, 'Unrecognised')):
        torch.save(obj, str(tmp_path / 'x.pth'))
        assert converter.main([str(tmp_path / 'x.pth'), out]) == 1
        err = capsys.readouterr().err
        assert message in err and err.count('\n') == 1, err
