# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Large vocabularies: length-sorted batches, progress, and the on-disk cache
of class embeddings (exact hits, keys, safety)."""
import io
import os
import os.path as osp
import subprocess
import sys
import warnings

import pytest
import torch
from conftest import REPO, make_tiny_clip, tiny_clip_cfg

from mmmaskclip.models.text import MaskCLIPTextEncoder, TextEmbeddingCache
from mmmaskclip.models.text import embedding_cache as cache_module
from mmmaskclip.models.text import resolve_cache_dir

NAMES = ['cat', 'wall, brick wall', 'traffic light', 'sky']
TEMPLATES = ['a photo of a {}.', 'There is a {} in the scene']


@pytest.fixture(scope='module')
def clip_model():
    """A tiny CLIP whose text tower has three blocks (one in the middle)."""
    cfg = tiny_clip_cfg()
    cfg['text_cfg'] = dict(cfg['text_cfg'], layers=3)
    import open_clip
    torch.manual_seed(4)
    model = open_clip.CLIP(**cfg).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.02 * torch.randn_like(param))
    return model


def count_passes(encoder):
    """The batch size of every pass of ``encoder``'s text tower."""
    calls = []
    encoder.clip.ln_final.register_forward_hook(
        lambda module, args, out: calls.append(args[0].shape[0]))
    return calls


def cache_files(folder):
    return sorted(os.listdir(folder)) if osp.isdir(folder) else []


def test_second_encoder_hits_the_cache_bit_for_bit(clip_model, tmp_path):
    computed = MaskCLIPTextEncoder(clip_model, TEMPLATES, cache_dir=False)(NAMES)
    first = MaskCLIPTextEncoder(clip_model, TEMPLATES, cache_dir=str(tmp_path))
    first_calls = count_passes(first)
    stored = first(NAMES)
    assert len(first_calls) == 1
    assert torch.equal(stored, computed)
    files = cache_files(tmp_path)
    assert files == [first.cache_key(NAMES) + '.pt']  # no temporary file left
    # a fresh object with the same weights (as another process would build)
    second = MaskCLIPTextEncoder(clip_model, TEMPLATES, cache_dir=str(tmp_path))
    calls = count_passes(second)
    loaded = second(NAMES)
    assert calls == []  # the text tower never ran
    assert torch.equal(loaded, computed) and loaded.dtype == torch.float32
    assert loaded.device == second.device
    # with no in-memory cache too, and callers cannot corrupt the file
    third = MaskCLIPTextEncoder(clip_model, TEMPLATES, cache_size=0, cache_dir=str(tmp_path))
    third_calls = count_passes(third)
    third(NAMES).zero_()
    assert torch.equal(third(NAMES), computed) and third_calls == []
    assert cache_files(tmp_path) == files


def test_file_content(clip_model, tmp_path):
    encoder = MaskCLIPTextEncoder(clip_model, cache_dir=str(tmp_path))
    out = encoder(NAMES)
    key = encoder.cache_key(NAMES)
    data = torch.load(tmp_path / f'{key}.pt', weights_only=True)
    assert data['key'] == key
    assert data['embeddings'].dtype == torch.float32
    assert data['embeddings'].device.type == 'cpu'
    assert torch.equal(data['embeddings'], out)


def keys_of(encoder_kwargs, names=NAMES, clip=None):
    """The cache key of ``names`` for an encoder built with these arguments."""
    return MaskCLIPTextEncoder(clip, cache_dir=False, **encoder_kwargs).cache_key(names)


def test_key_changes_with_what_changes_embeddings(clip_model):
    base = keys_of(dict(templates=TEMPLATES), clip=clip_model)
    # deterministic: another instance, and a dtype round trip, give the same key
    assert keys_of(dict(templates=TEMPLATES), clip=clip_model) == base
    encoder = MaskCLIPTextEncoder(clip_model, TEMPLATES, cache_dir=False)
    encoder.to(torch.float64)
    float64 = encoder.cache_key(NAMES)
    encoder.to(torch.float32)
    assert float64 != base and encoder.cache_key(NAMES) == base
    variations = [
        (dict(templates=TEMPLATES[:1]), NAMES, clip_model),  # fewer templates
        (dict(templates=TEMPLATES[::-1]), NAMES, clip_model),  # template order
        (dict(templates=TEMPLATES), NAMES[:3] + ['sea'], clip_model),  # a name
        (dict(templates=TEMPLATES), NAMES[::-1], clip_model),  # name order
        (dict(templates=TEMPLATES), NAMES[:3], clip_model),  # fewer names
        (dict(templates=TEMPLATES), ['cat', 'wall', 'brick wall'] + NAMES[2:], clip_model),
        (dict(templates=TEMPLATES, split_synonyms=False), NAMES, clip_model),
        (dict(templates=TEMPLATES), NAMES, make_tiny_clip(seed=5)),  # other weights
    ]
    others = {keys_of(kwargs, names, clip=clip) for kwargs, names, clip in variations}
    assert len(others) == len(variations)
    assert base not in others


def test_key_changes_with_architecture_and_tokenizer(clip_model):
    """Same weights, another activation (QuickGELU) or tokenizer cleaning:
    other embeddings, so other keys."""
    import open_clip
    cfg = tiny_clip_cfg()
    cfg['text_cfg'] = dict(cfg['text_cfg'], layers=3)
    quick = open_clip.CLIP(**cfg, quick_gelu=True).eval()
    quick.load_state_dict(clip_model.state_dict())
    canon_cfg = dict(
        cfg, text_cfg=dict(cfg['text_cfg'], tokenizer_kwargs=dict(clean='canonicalize')))
    from mmmaskclip.models import build_clip_model
    canonical = build_clip_model(dict(model_cfg=canon_cfg))
    canonical.load_state_dict(clip_model.state_dict())
    base = keys_of({}, clip=clip_model)
    keys = {keys_of({}, clip=quick), keys_of({}, clip=canonical)}
    assert len(keys) == 2 and base not in keys
    # and these really give other embeddings
    plain = MaskCLIPTextEncoder(clip_model, cache_dir=False)(NAMES)
    assert (MaskCLIPTextEncoder(quick, cache_dir=False)(NAMES) - plain).abs().max() > 1e-4


def one_ulp_up(tensor, index):
    with torch.no_grad():
        tensor[index] = torch.nextafter(tensor[index], torch.tensor(float('inf')))


#: (parameter, index): a summed and sampled tensor, the last element of
#: another, a small one (hashed byte for byte), the largest one.
ONE_WEIGHT = [('transformer.resblocks.1.mlp.c_fc.weight', (100, 17)),
              ('transformer.resblocks.1.attn.in_proj_weight', (191, 63)),
              ('transformer.resblocks.1.ln_1.bias', (31, )), ('token_embedding.weight', (49407, 0))]


@pytest.mark.parametrize('param,index', ONE_WEIGHT)
def test_one_weight_of_a_middle_block_changes_the_key(clip_model, param, index):
    encoder = MaskCLIPTextEncoder(clip_model, cache_dir=False)
    before = encoder.cache_key(NAMES)
    tensor = dict(encoder.clip.named_parameters())[param]
    one_ulp_up(tensor, index)  # the smallest change there is
    assert encoder.cache_key(NAMES) != before


#: Swapped elements: in other blocks; in one block, other residue classes
#: and not sampled; the two halves of one word.
SWAPS = [(10, 5000), (10, 12), (10, 11)]


@pytest.mark.parametrize('i,j', SWAPS)
def test_swapped_weights_change_the_key(clip_model, i, j):
    """Two values trading places keep every plain sum; the blocks, residue
    classes and words of the fingerprint see it."""
    encoder = MaskCLIPTextEncoder(clip_model, cache_dir=False)
    before = encoder.cache_key(NAMES)
    weight = encoder.clip.transformer.resblocks[1].mlp.c_proj.weight  # 64 x 256
    with torch.no_grad():
        flat = weight.view(-1)
        assert flat[i] != flat[j]
        flat[[i, j]] = flat[[j, i]]
    assert encoder.cache_key(NAMES) != before
    with torch.no_grad():  # swapped back: the same key again
        flat[[i, j]] = flat[[j, i]]
    assert encoder.cache_key(NAMES) == before


def test_weights_fingerprint_is_exact_and_order_free(clip_model):
    """Integer sums modulo 2**64: the same whatever the thread count, and
    equal to sums computed by hand in Python."""
    tensor = clip_model.transformer.resblocks[1].mlp.c_fc.weight  # 256 x 64 float32
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = cache_module.tensor_fingerprint(tensor)
    finally:
        torch.set_num_threads(threads)
    assert cache_module.tensor_fingerprint(tensor) == single
    words = tensor.detach().reshape(-1).view(torch.int64).tolist()  # 8192 words
    blocks, residues = cache_module.BLOCKS, cache_module.RESIDUES
    size = len(words) // blocks

    def wrap(value):  # to a signed 64-bit integer
        return (value + 2**63) % 2**64 - 2**63

    by_hand = [
        wrap(sum(words[b * size + r:(b + 1) * size:residues])) for b in range(blocks)
        for r in range(residues)
    ]
    shape, dtype, sums, samples, tail = single
    assert sums == by_hand + [0] and tail == ''  # nothing left over
    assert samples[0] == words[0] and samples[-1] == words[-1] and len(samples) == 64
    assert shape == [256, 64] and dtype == 'torch.float32'
    # a tensor whose storage starts off an 8-byte boundary, with a tail
    odd = torch.arange(9000, dtype=torch.float32)[1:]
    assert cache_module.tensor_fingerprint(odd) == cache_module.tensor_fingerprint(odd.clone())
    assert cache_module.tensor_fingerprint(odd)[-1] == odd[-1:].numpy().tobytes().hex()


def write_garbage(path, kind, good_file):
    if kind == 'garbage':
        path.write_bytes(b'not a torch file')
    elif kind == 'truncated':
        path.write_bytes(good_file[:len(good_file) // 2])
    elif kind == 'empty':
        path.write_bytes(b'')
    elif kind == 'wrong shape':
        torch.save(dict(key=path.stem, embeddings=torch.zeros(2, 32)), path)
    elif kind == 'wrong key':
        torch.save(dict(key='0' * 64, embeddings=torch.zeros(len(NAMES), 32)), path)


@pytest.mark.parametrize('kind', ['garbage', 'truncated', 'empty', 'wrong shape', 'wrong key'])
def test_corrupt_file_is_ignored_with_a_warning(clip_model, tmp_path, kind):
    encoder = MaskCLIPTextEncoder(clip_model, cache_size=0, cache_dir=str(tmp_path))
    expected = encoder(NAMES)
    path = tmp_path / f'{encoder.cache_key(NAMES)}.pt'
    write_garbage(path, kind, path.read_bytes())
    calls = count_passes(encoder)
    with pytest.warns(UserWarning, match='Ignoring the unreadable text-embedding cache file'):
        out = encoder(NAMES)
    assert len(calls) == 1  # recomputed ...
    assert torch.equal(out, expected)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert torch.equal(encoder(NAMES), expected)  # ... and rewritten
    assert len(calls) == 1


def test_writes_go_through_a_temporary_file_and_replace(clip_model, tmp_path, monkeypatch):
    replaced = []
    real_replace = os.replace

    def spy(src, dst):
        # the final name does not exist yet and the whole file is in src
        replaced.append((src, dst, osp.exists(dst), torch.load(src, weights_only=True)))
        real_replace(src, dst)

    monkeypatch.setattr(cache_module.os, 'replace', spy)
    encoder = MaskCLIPTextEncoder(clip_model, cache_dir=str(tmp_path / 'new' / 'folder'))
    out = encoder(NAMES)
    (src, dst, existed, data), = replaced
    assert osp.dirname(src) == osp.dirname(dst) == str(tmp_path / 'new' / 'folder')
    assert osp.basename(src).startswith('.') and src.endswith('.tmp')
    assert dst == osp.join(encoder.cache_dir, encoder.cache_key(NAMES) + '.pt')
    assert not existed and torch.equal(data['embeddings'], out)
    assert cache_files(encoder.cache_dir) == [osp.basename(dst)]


def test_unwritable_folder_warns_once_and_still_embeds(clip_model, tmp_path):
    blocker = tmp_path / 'a_file'
    blocker.write_text('not a folder')
    encoder = MaskCLIPTextEncoder(clip_model, cache_size=0, cache_dir=str(blocker / 'cache'))
    expected = MaskCLIPTextEncoder(clip_model, cache_dir=False)(NAMES)
    with pytest.warns(UserWarning, match='Could not write the text-embedding cache'):
        assert torch.equal(encoder(NAMES), expected)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert torch.equal(encoder(NAMES), expected)


WORKER = r'''
import importlib.util, sys, warnings
import torch
warnings.simplefilter('error')
spec = importlib.util.spec_from_file_location('cache', sys.argv[1])
cache = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cache)
store = cache.TextEmbeddingCache(sys.argv[2])
me = float(sys.argv[3])
for _ in range(int(sys.argv[4])):
    store.save('k' * 64, torch.full((300, 64), me))
    got = store.load('k' * 64, (300, 64))
    # always a whole file: one writer's values, never a mix or a partial file
    assert got is not None and got.unique().numel() == 1 and float(got[0, 0]) in (1., 2.), got
print('ok')
'''


def test_two_processes_share_one_file(tmp_path):
    """Two processes write and read the same key at once: every read sees a
    whole file (no warning, no partial data), no temporary file is left."""
    source = osp.join(REPO, 'mmmaskclip', 'models', 'text', 'embedding_cache.py')
    folder = str(tmp_path / 'shared')
    procs = [
        subprocess.Popen([sys.executable, '-c', WORKER, source, folder, f'{value}', '25'],
                         stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE,
                         text=True) for value in (1, 2)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and out.strip() == 'ok', err
    assert cache_files(folder) == ['k' * 64 + '.pt']


def test_cache_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv('MMMASKCLIP_CACHE_DIR', str(tmp_path / 'root'))
    assert resolve_cache_dir() == str(tmp_path / 'root' / 'text_embeddings')
    assert resolve_cache_dir(True) == resolve_cache_dir(None)
    assert resolve_cache_dir(False) is None
    assert resolve_cache_dir(str(tmp_path / 'mine')) == str(tmp_path / 'mine')
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    assert resolve_cache_dir('~/x') == str(tmp_path / 'home' / 'x')
    monkeypatch.setenv('MMMASKCLIP_CACHE_DIR', 'off')
    assert resolve_cache_dir() is None
    monkeypatch.delenv('MMMASKCLIP_CACHE_DIR')
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
    assert resolve_cache_dir() == str(tmp_path / 'xdg' / 'mmmaskclip' / 'text_embeddings')
    monkeypatch.delenv('XDG_CACHE_HOME')
    assert resolve_cache_dir() == str(tmp_path / 'home' / '.cache' / 'mmmaskclip' /
                                      'text_embeddings')
    with pytest.raises(ValueError, match='must name a folder'):
        resolve_cache_dir('')
    with pytest.raises(TypeError, match='cache_dir must be a folder.*int: 3'):
        resolve_cache_dir(3)


def test_encoder_default_folder_and_off(clip_model, monkeypatch, tmp_path):
    monkeypatch.setenv('MMMASKCLIP_CACHE_DIR', str(tmp_path))
    encoder = MaskCLIPTextEncoder(clip_model)
    assert encoder.cache_dir == str(tmp_path / 'text_embeddings')
    encoder(NAMES)
    assert len(cache_files(encoder.cache_dir)) == 1
    off = MaskCLIPTextEncoder(clip_model, cache_dir=False)
    assert off.cache_dir is None and off.disk_cache is None
    assert 'cache_dir=None' in repr(off)


def test_load_missing_returns_none(tmp_path):
    store = TextEmbeddingCache(str(tmp_path / 'nothing'))
    assert store.load('a' * 64, (2, 3)) is None
    store.save('a' * 64, torch.ones(2, 3, dtype=torch.float64))
    loaded = store.load('a' * 64, (2, 3))
    assert loaded.dtype == torch.float32 and torch.equal(loaded, torch.ones(2, 3))


def test_prompt_batches_permutation_and_ties():
    from mmmaskclip.models.text.embedding_cache import prompt_batches, token_lengths
    tokens = torch.tensor([[5, 6, 0, 0], [5, 0, 0, 0], [5, 6, 7, 8], [5, 6, 0, 0], [0, 0, 0, 0]])
    lengths = token_lengths(tokens)
    assert lengths.tolist() == [2, 1, 4, 2, 0]
    batches = prompt_batches(lengths, 2)
    assert [b.tolist() for b in batches] == [[2, 0], [3, 1], [4]]  # ties keep their order
    assert [b.tolist() for b in prompt_batches(lengths, 2, sort=False)] == [[0, 1], [2, 3], [4]]
    assert sorted(torch.cat(prompt_batches(lengths, 3)).tolist()) == list(range(5))


class FakeTerminal(io.StringIO):

    def isatty(self):
        return True


@pytest.mark.parametrize('num_batches,enabled,tty,bar,logs', [
    (3, True, True, True, 0),
    (3, True, False, False, 2),
    (1, True, True, False, 0),
    (3, False, True, False, 0),
    (3, False, False, False, 0),
])
def test_batch_progress(monkeypatch, num_batches, enabled, tty, bar, logs):
    """A bar on a terminal, two log lines (no carriage return) elsewhere,
    nothing for one batch or when disabled."""
    import mmengine.logging

    from mmmaskclip.models.text.embedding_cache import batch_progress
    messages = []
    monkeypatch.setattr(
        mmengine.logging, 'print_log', lambda msg, logger=None, level=None: messages.append(msg))
    stream = FakeTerminal() if tty else io.StringIO()
    with batch_progress(num_batches, 7, enabled, stream=stream) as update:
        for _ in range(num_batches):
            update()
    written = stream.getvalue()
    assert bool(written) == bar
    if bar:
        assert f'{num_batches}/{num_batches}' in written and written.endswith('\n')
    assert len(messages) == logs
    if logs:
        assert messages[0] == f'Encoding 7 prompts in {num_batches} batches...'
        assert messages[1].startswith('Encoded 7 prompts in ')
