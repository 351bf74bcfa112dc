# Copyright (c) mmmaskclip contributors. All rights reserved.
"""MaskCLIPTextEncoder against open_clip's own ``encode_text`` (tiny CLIP)."""
import copy
import math
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from conftest import make_tiny_clip, tiny_clip_cfg

from mmmaskclip.models.clip_loader import CLIPWeightsNotFoundError
from mmmaskclip.models.text import MaskCLIPTextEncoder, resolve_templates

VILD = [
    'a photo of a {}.', 'This is a photo of a {}', 'There is a {} in the scene',
    'There is the {} in the scene', 'a photo of a {} in the scene', 'a photo of a small {}.',
    'a photo of a medium {}.', 'a photo of a large {}.', 'This is a photo of a small {}.',
    'This is a photo of a medium {}.', 'This is a photo of a large {}.',
    'There is a small {} in the scene.', 'There is a medium {} in the scene.',
    'There is a large {} in the scene.'
]


@pytest.fixture(autouse=True)
def empty_disk_cache(tmp_path, monkeypatch):
    """Each test starts with an empty disk cache of its own: tower passes
    counted here are not served by another test's files."""
    monkeypatch.setenv('MMMASKCLIP_CACHE_DIR', str(tmp_path / 'cache'))


@pytest.fixture(scope='module')
def clip_model():
    """This module's own tiny CLIP (encoders must leave it untouched)."""
    return make_tiny_clip(seed=2)


@pytest.fixture(scope='module')
def tokenizer(clip_model):
    import open_clip
    return open_clip.SimpleTokenizer(context_length=clip_model.context_length)


def reference(model, tokenizer, prompts):
    """open_clip's own normalised text embeddings, P x E."""
    with torch.no_grad():
        return model.encode_text(tokenizer(list(prompts)), normalize=True)


def hand_embedding(model, tokenizer, synonyms, templates):
    """normalize(mean_s normalize(mean_t e(s, t))), written out directly."""
    per_synonym = []
    for s in synonyms:
        e = reference(model, tokenizer, [t.format(s) for t in templates])
        per_synonym.append(F.normalize(e.mean(0), dim=-1))
    return F.normalize(torch.stack(per_synonym).mean(0), dim=-1)


def count_calls(encoder):
    """Record the batch size of every pass of ``encoder``'s text tower (its
    final LayerNorm runs once a pass, trimmed or not)."""
    calls = []
    # the encoder is the test's own: the hook goes with it
    encoder.clip.ln_final.register_forward_hook(
        lambda module, args, out: calls.append(args[0].shape[0]))
    return calls


@pytest.mark.parametrize('template', [None, '{}', 'a photo of a {}.'])
def test_single_template_matches_open_clip(clip_model, tokenizer, template):
    names = ['cat', 'traffic light', 'sky']
    encoder = MaskCLIPTextEncoder(clip_model, templates=template)
    out = encoder(names)
    prompts = [(template or '{}').format(n) for n in names]
    expected = reference(clip_model, tokenizer, prompts)
    assert out.shape == (3, encoder.embed_dim) == (3, 32)
    assert out.dtype == torch.float32 and not out.requires_grad
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(3))


def test_synonyms_and_template_list(clip_model, tokenizer):
    templates = ['a photo of a {}.', 'There is a {} in the scene']
    encoder = MaskCLIPTextEncoder(clip_model, templates=templates)
    out = encoder(['wall, brick wall', 'sky', ' ,tree ,, '])
    expected = torch.stack([
        hand_embedding(clip_model, tokenizer, ['wall', 'brick wall'], templates),
        hand_embedding(clip_model, tokenizer, ['sky'], templates),
        hand_embedding(clip_model, tokenizer, ['tree'], templates)
    ])
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
    # the synonym really counts: 'wall' alone is a different embedding
    wall = hand_embedding(clip_model, tokenizer, ['wall'], templates)
    assert (out[0] - wall).abs().max() > 1e-3


def test_vild_ensemble_and_batching(clip_model, tokenizer, monkeypatch):
    names = ['cat', 'dining table, table']
    encoder = MaskCLIPTextEncoder(clip_model, templates='vild', batch_size=5)
    assert list(encoder.templates) == VILD
    calls = count_calls(encoder)
    out = encoder(names)
    # 3 synonyms x 14 templates = 42 prompts, in chunks of 5
    assert calls == [5] * 8 + [2]
    expected = torch.stack([
        hand_embedding(clip_model, tokenizer, ['cat'], VILD),
        hand_embedding(clip_model, tokenizer, ['dining table', 'table'], VILD)
    ])
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
    # and the ensemble differs from any single template
    single = reference(clip_model, tokenizer, ['a photo of a cat.'])[0]
    assert (out[0] - single).abs().max() > 1e-3


def test_shared_synonyms_are_encoded_once(clip_model, tokenizer, monkeypatch):
    encoder = MaskCLIPTextEncoder(clip_model, templates=VILD[:2])
    calls = count_calls(encoder)
    out = encoder(['cat', 'cat, kitty', 'cat'])
    assert calls == [2 * 2]  # 'cat' and 'kitty', two templates each
    torch.testing.assert_close(out[0], out[2])
    expected = hand_embedding(clip_model, tokenizer, ['cat', 'kitty'], VILD[:2])
    torch.testing.assert_close(out[1], expected, atol=1e-6, rtol=0)


def test_named_template_sets():
    imagenet = resolve_templates('imagenet')
    assert len(imagenet) == 80 and len(set(imagenet)) == 80
    assert imagenet[0] == 'a bad photo of a {}.'
    assert all(t.count('{}') == 1 for t in imagenet)
    assert list(resolve_templates('vild')) == VILD
    assert resolve_templates(None) == resolve_templates('{}') == ('{}', )
    assert resolve_templates([lambda c: f'art of {c}']) == ('art of {}', )


def test_imagenet_templates_encode(clip_model, tokenizer):
    encoder = MaskCLIPTextEncoder(clip_model, templates='imagenet')
    assert len(encoder.templates) == 80
    out = encoder(['dog'])
    expected = hand_embedding(clip_model, tokenizer, ['dog'], encoder.templates)
    torch.testing.assert_close(out[0], expected, atol=1e-6, rtol=0)


def test_cache_hit_and_miss(clip_model, monkeypatch):
    encoder = MaskCLIPTextEncoder(clip_model, cache_dir=False)
    calls = count_calls(encoder)
    first = encoder(['cat', 'dog'])
    assert len(calls) == 1
    second = encoder(['cat', 'dog'])
    assert len(calls) == 1  # served from the cache
    torch.testing.assert_close(first, second, atol=0, rtol=0)
    # callers cannot corrupt the cache through the returned tensor
    second.zero_()
    torch.testing.assert_close(encoder(['cat', 'dog']), first, atol=0, rtol=0)
    assert len(calls) == 1
    encoder(['dog', 'cat'])  # another vocabulary (order matters)
    assert len(calls) == 2
    encoder.clear_cache()
    encoder(['cat', 'dog'])
    assert len(calls) == 3


def test_cache_lru_eviction(clip_model, monkeypatch):
    encoder = MaskCLIPTextEncoder(clip_model, cache_size=2, cache_dir=False)
    calls = count_calls(encoder)
    for vocab, misses in [(['a'], 1), (['b'], 2), (['a'], 2), (['c'], 3), (['a'], 3), (['b'], 4),
                          (['c'], 5)]:
        encoder(vocab)
        assert len(calls) == misses, vocab


def test_cache_disabled(clip_model, monkeypatch):
    encoder = MaskCLIPTextEncoder(clip_model, cache_size=0, cache_dir=False)
    calls = count_calls(encoder)
    encoder(['cat'])
    encoder(['cat'])
    assert len(calls) == 2


def test_cache_invalidated_by_dtype(clip_model, monkeypatch):
    encoder = MaskCLIPTextEncoder(clip_model, cache_dir=False)
    calls = count_calls(encoder)
    fp32 = encoder(['cat', 'dog'])
    encoder.to(torch.float64)
    fp64 = encoder(['cat', 'dog'])
    assert len(calls) == 2 and fp64.dtype == torch.float32
    torch.testing.assert_close(fp64, fp32, atol=1e-5, rtol=0)
    encoder.to(torch.float32)
    encoder(['cat', 'dog'])
    assert len(calls) == 3
    # the caller's model did not move with the encoder
    assert all(p.dtype == torch.float32 for p in clip_model.parameters())


def test_frozen_eval_text_only(clip_model):
    clip_model.train()
    try:
        encoder = MaskCLIPTextEncoder(clip_model)
        assert clip_model.training  # the caller's model keeps its mode
    finally:
        clip_model.eval()
    params = list(encoder.parameters())
    assert params and not any(p.requires_grad for p in params)
    encoder.train()
    assert not encoder.training
    assert not any(m.training for m in encoder.modules())
    # the image tower is not held ...
    assert encoder.clip.visual is None
    assert not any(n.startswith('clip.visual') for n, _ in encoder.named_parameters())
    num_visual = sum(p.numel() for p in clip_model.visual.parameters())
    num_total = sum(p.numel() for p in clip_model.parameters())
    assert sum(p.numel() for p in params) == num_total - num_visual
    # ... and the caller's model is untouched: it keeps its image tower and
    # trainable weights; the encoder has its own copy of the text weights
    assert isinstance(clip_model.visual, torch.nn.Module)
    assert all(p.requires_grad for p in clip_model.parameters())
    assert (encoder.clip.token_embedding.weight.data_ptr()
            != clip_model.token_embedding.weight.data_ptr())
    torch.testing.assert_close(encoder.clip.token_embedding.weight,
                               clip_model.token_embedding.weight)


def test_load_from_checkpoint_file(clip_model, tmp_path):
    from mmdet.registry import MODELS
    path = tmp_path / 'tiny_clip.pth'
    torch.save(clip_model.state_dict(), path)
    names = ['wall, brick wall', 'sky']
    in_memory = MaskCLIPTextEncoder(clip_model, templates='vild')(names)
    encoder = MODELS.build(
        dict(
            type='MaskCLIPTextEncoder',
            templates='vild',
            clip=dict(model_cfg=tiny_clip_cfg(), pretrained=str(path))))
    assert encoder.clip.visual is None
    assert not any(p.requires_grad for p in encoder.parameters())
    torch.testing.assert_close(encoder(names), in_memory, atol=1e-6, rtol=0)
    # without the checkpoint the weights are random: the check above has teeth
    random_init = MaskCLIPTextEncoder(dict(model_cfg=tiny_clip_cfg()), 'vild')
    assert (random_init(names) - in_memory).abs().max() > 1e-2


def test_offline_tag_raises_helpful_error(monkeypatch, tmp_path):
    import open_clip
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    try:  # the hub client reads the variable at import time
        from huggingface_hub import constants
        monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', True)
    except ImportError:
        pass
    cache_dir = str(tmp_path / 'clip_cache')
    with pytest.raises(CLIPWeightsNotFoundError) as err:
        MaskCLIPTextEncoder(dict(name='ViT-B-32', pretrained='openai', cache_dir=cache_dir))
    cfg = open_clip.get_pretrained_cfg('ViT-B-32', 'openai')
    message = str(err.value)
    # what to download: the hub repo (or the URL without a hub entry) ...
    source = osp.split(cfg['hf_hub'])[0] if cfg.get('hf_hub') else cfg['url']
    assert source in message
    assert cache_dir in message  # and where to put it
    assert 'pretrained=' in message


def test_unknown_tag_lists_known_tags():
    with pytest.raises(CLIPWeightsNotFoundError, match='known tags') as err:
        MaskCLIPTextEncoder(dict(name='ViT-B-32', pretrained='no-such-tag'))
    assert 'no-such-tag' in str(err.value) and "'openai'" in str(err.value)


def test_bad_vocabulary(clip_model):
    encoder = MaskCLIPTextEncoder(clip_model)
    with pytest.raises(ValueError, match='empty'):
        encoder([])
    with pytest.raises(TypeError, match=r'class_names\[1\].*int: 3'):
        encoder(['cat', 3])
    with pytest.raises(ValueError, match=r"class_names\[2\] \(' , '\)"):
        encoder(['cat', 'dog', ' , '])
    with pytest.raises(TypeError, match='sequence of str'):
        encoder('cat')
    assert encoder(['cat']).shape == (1, 32)


@pytest.mark.parametrize('templates,error,match', [
    ('nonsense', ValueError, r"Unknown prompt template set 'nonsense'.*imagenet"),
    ('a {} next to a {}', ValueError, 'exactly one'),
    ('a {0} photo', ValueError, 'exactly one'),
    ('a {{}} photo', ValueError, 'exactly one'),
    (['{}', 'a {} with {'], ValueError, r'templates\[1\]'),
    ([], ValueError, 'empty'),
    (['{}', 3], TypeError, r'templates\[1\]'),
])
def test_bad_templates(clip_model, templates, error, match):
    with pytest.raises(error, match=match):
        MaskCLIPTextEncoder(clip_model, templates=templates)


@pytest.mark.parametrize('kwargs', [dict(cache_size=-1), dict(batch_size=0)])
def test_bad_sizes(clip_model, kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        MaskCLIPTextEncoder(clip_model, **kwargs)


def test_embed_dim_follows_projection():
    encoder = MaskCLIPTextEncoder(make_tiny_clip(seed=3, embed_dim=24))
    assert encoder.embed_dim == 24
    assert encoder(['cat']).shape == (1, 24)
    assert math.isclose(encoder(['cat']).norm().item(), 1.0, rel_tol=1e-6)


def test_embeddings_ignore_caller_autocast(clip_model, tokenizer):
    names = ['cat', 'wall, brick wall']
    expected = MaskCLIPTextEncoder(clip_model, cache_size=0)(names)
    encoder = MaskCLIPTextEncoder(clip_model)
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        out = encoder(names)  # computed (and cached) in float32 all the same
        lowp = clip_model.encode_text(tokenizer(['cat']), normalize=True)
    # autocast would change the embedding noticeably ...
    assert (lowp.float() - expected[:1]).abs().max() > 1e-4
    # ... but the encoder's are exact
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)


def canonical_text_cfg():
    """A tiny text tower whose config asks for another tokenizer cleaning
    (``clean='canonicalize'``: lower case, punctuation removed), as the SigLIP
    configs of open_clip do; no download needed."""
    cfg = tiny_clip_cfg()
    cfg['text_cfg'] = dict(cfg['text_cfg'], tokenizer_kwargs=dict(clean='canonicalize'))
    return cfg


def test_tokenizer_follows_the_model_config():
    """The tokenizer a model needs is used wherever the model comes from:
    its config, or a model built from it and shared (as MaskCLIP shares one
    CLIP between the visual and the text encoder); never a silent fallback
    to CLIP's default tokenizer."""
    import open_clip

    from mmmaskclip.models import MaskCLIP, build_clip_model
    torch.manual_seed(0)
    clip = build_clip_model(dict(model_cfg=canonical_text_cfg()))
    names = ['T-Shirt!', "children's bed", 'wall']
    canonical = open_clip.SimpleTokenizer(clean='canonicalize')
    assert not torch.equal(canonical(names), open_clip.SimpleTokenizer()(names))
    expected = reference(clip, canonical, names)
    direct = MaskCLIPTextEncoder(clip=clip)(names)
    torch.testing.assert_close(direct, expected)
    maskclip = MaskCLIP(clip=clip, proposer=dict(type='GTMaskProposer'), head=None)
    torch.testing.assert_close(maskclip.text_encoder(names), expected)
    assert not torch.allclose(direct, reference(clip, open_clip.SimpleTokenizer(), names))


def test_tokenizer_of_unknown_models():
    """A module built elsewhere: CLIP's BPE when its text vocabulary is CLIP's,
    else a clear error asking for the tokenizer's name."""
    import open_clip
    clip = open_clip.CLIP(**tiny_clip_cfg()).eval()
    assert isinstance(MaskCLIPTextEncoder(clip=clip).tokenizer, open_clip.SimpleTokenizer)
    cfg = tiny_clip_cfg()
    cfg['text_cfg'] = dict(cfg['text_cfg'], vocab_size=1000)
    other = open_clip.CLIP(**cfg).eval()
    with pytest.raises(ValueError, match="tokenizer='<open_clip model name>'"):
        MaskCLIPTextEncoder(clip=other)
    from mmmaskclip.models.clip_loader import clip_tokenizer
    named = clip_tokenizer(other, tokenizer='ViT-B-16')  # an explicit name wins
    assert isinstance(named, open_clip.SimpleTokenizer)


def test_names_verbatim(clip_model, tokenizer):
    """``split_synonyms=False`` embeds each name as one string (the authors'
    ADE20K names, synonyms comma-joined)."""
    names = ['wall, brick wall', 'window ']
    encoder = MaskCLIPTextEncoder(clip=clip_model, split_synonyms=False)
    torch.testing.assert_close(encoder(names), reference(clip_model, tokenizer, names))
    split = MaskCLIPTextEncoder(clip=clip_model)(names)
    assert not torch.allclose(split[0], encoder(names)[0])


def test_trimmed_padding_equals_open_clip_at_full_length(clip_model, tokenizer):
    """Cutting the padding after the longest text changes no embedding (causal
    mask, pooling at the end of text) and runs fewer positions."""
    from mmmaskclip.models.text.text_encoder import can_trim_padding, encode_text_trimmed
    prompts = ['cat', 'a photo of a small toy rabbit on a red sofa.', '']
    tokens = tokenizer(prompts)
    assert can_trim_padding(clip_model, tokenizer)
    lengths = []
    handle = clip_model.ln_final.register_forward_hook(
        lambda module, args, out: lengths.append(args[0].shape[1]))
    try:
        with torch.no_grad():
            full = clip_model.encode_text(tokens)
            trimmed = encode_text_trimmed(clip_model, tokens)
    finally:
        handle.remove()
    assert lengths == [tokens.shape[1], int((tokens[1] != 0).sum())]
    torch.testing.assert_close(trimmed, full, rtol=1e-5, atol=1e-5)
    encoder = MaskCLIPTextEncoder(clip=clip_model)
    assert encoder.trim_padding
    torch.testing.assert_close(
        encoder(prompts[:2]), reference(clip_model, tokenizer, prompts[:2]), rtol=1e-5, atol=1e-5)
    # a pooling rule that reads the last position: no trimming
    last = copy.copy(clip_model)
    last.text_pool_type = 'last'
    assert not can_trim_padding(last, tokenizer)


def positions_by_hand(tokenizer, prompts, batch_size, sort):
    """Sequence length of each tower pass, from the tokens (independent of
    the encoder's helpers): longest first when sorting, stable for ties."""
    lengths = [int((row != 0).sum()) for row in tokenizer(list(prompts))]
    order = list(range(len(prompts)))
    if sort:
        order.sort(key=lambda i: -lengths[i])
    return [
        max(lengths[i] for i in order[start:start + batch_size])
        for start in range(0, len(order), batch_size)
    ]


NAMES = [
    'cat', 'a very long name of a small red toy rabbit on a sofa', 'dog', 'traffic light', 'sky',
    'the blue house next to the old tree by the river bank', 'person', 'wall', 'bed'
]


def test_sorted_batches_same_embeddings_in_order(clip_model, tokenizer):
    """Sorting prompts by length before batching changes no embedding, gives
    them back in the caller's order, and runs fewer padded positions."""
    encoders = {
        sort: MaskCLIPTextEncoder(clip_model, batch_size=3, cache_dir=False, sort_by_length=sort)
        for sort in (True, False)
    }
    lengths = {}
    outputs = {}
    for sort, encoder in encoders.items():
        lengths[sort] = []
        encoder.clip.ln_final.register_forward_hook(
            lambda module, args, out, seen=lengths[sort]: seen.append(args[0].shape[1]))
        outputs[sort] = encoder(NAMES)
    torch.testing.assert_close(outputs[True], outputs[False], atol=1e-6, rtol=0)
    torch.testing.assert_close(
        outputs[True], reference(clip_model, tokenizer, NAMES), atol=1e-6, rtol=0)
    for sort in (True, False):
        assert lengths[sort] == positions_by_hand(tokenizer, NAMES, 3, sort)
    # the two long names share a batch: the other passes are short
    assert sum(lengths[True]) < sum(lengths[False])
    assert sorted(lengths[True], reverse=True) == lengths[True]


def test_sorted_batches_with_templates_and_synonyms(clip_model, tokenizer):
    names = ['wall, brick wall', NAMES[1], 'sky', 'cat, kitty']
    out = MaskCLIPTextEncoder(clip_model, templates=VILD[:3], batch_size=4, cache_dir=False)(names)
    expected = torch.stack([
        hand_embedding(clip_model, tokenizer, ['wall', 'brick wall'], VILD[:3]),
        hand_embedding(clip_model, tokenizer, [NAMES[1]], VILD[:3]),
        hand_embedding(clip_model, tokenizer, ['sky'], VILD[:3]),
        hand_embedding(clip_model, tokenizer, ['cat', 'kitty'], VILD[:3])
    ])
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)


def test_untrimmable_towers_are_not_sorted(clip_model, tokenizer):
    """Without trimming (a pooling rule that reads the last position), sorting
    would only reorder: the prompts run in their order, at full length."""
    encoder = MaskCLIPTextEncoder(clip_model, batch_size=2, cache_dir=False)
    encoder.trim_padding = False
    shapes = []
    encoder.clip.ln_final.register_forward_hook(
        lambda module, args, out: shapes.append(tuple(args[0].shape[:2])))
    out = encoder(NAMES[:3])
    assert shapes == [(2, 77), (1, 77)]
    torch.testing.assert_close(out, reference(clip_model, tokenizer, NAMES[:3]), atol=1e-6, rtol=0)


def test_encoder_shows_progress_for_many_batches(clip_model, monkeypatch):
    import mmengine.logging
    messages = []
    monkeypatch.setattr(
        mmengine.logging, 'print_log', lambda msg, logger=None, level=None: messages.append(msg))
    encoder = MaskCLIPTextEncoder(clip_model, batch_size=4, cache_dir=False)
    encoder(NAMES)  # 9 prompts: 3 batches (stderr is no terminal under pytest)
    assert messages[0] == 'Encoding 9 prompts in 3 batches...'
    messages.clear()
    MaskCLIPTextEncoder(clip_model, batch_size=4, cache_dir=False, progress=False)(NAMES)
    encoder(NAMES[:4])  # one batch
    assert messages == []
