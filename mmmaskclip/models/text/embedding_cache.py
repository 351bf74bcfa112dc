# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Large vocabularies: length-sorted batches, progress, and an on-disk cache
of class-name embeddings that is safe to share between processes.

A vocabulary's embeddings are stored in one file named by a key that hashes
everything that changes them (see :func:`vocabulary_key`): the text tower's
architecture and weights, the tokenizer, the prompt templates, the class
names in their order, the synonym splitting and the output format. Files
are written to a temporary file in the same folder and renamed into place
(``os.replace``, atomic on POSIX and Windows), so concurrent readers see
either no file or a whole one; a file that cannot be read is ignored with a
warning and rewritten.

Location: ``$MMMASKCLIP_CACHE_DIR/text_embeddings`` if that variable is set
(to ``off`` to switch the cache off), else
``$XDG_CACHE_HOME/mmmaskclip/text_embeddings`` (``~/.cache/mmmaskclip/...``).
"""
import contextlib
import hashlib
import json
import os
import os.path as osp
import sys
import tempfile
import time
import warnings
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from torch import Tensor

#: Environment variable naming mmmaskclip's cache folder (``off``: no cache).
CACHE_ENV = 'MMMASKCLIP_CACHE_DIR'
#: Sub-folder of the cache folder that holds the text embeddings.
SUBDIR = 'text_embeddings'
#: Bump when the embedding recipe changes: old files then stop matching.
FORMAT = 'mmmaskclip-text-embeddings-v1'
#: The output every file holds (part of the key).
OUTPUT = ('float32, L2-normalised; normalize(mean over templates), then '
          'normalize(mean over synonyms)')

#: Tensors up to this many elements are hashed byte for byte.
SMALL_TENSOR = 4096
#: A larger tensor is summed in BLOCKS contiguous blocks x RESIDUES positions
#: modulo RESIDUES, and SAMPLES evenly spaced elements are kept verbatim.
BLOCKS, RESIDUES, SAMPLES = 16, 16, 64

CacheDir = Union[str, bool, None]


def token_lengths(tokens: Tensor) -> Tensor:
    """Tokenised lengths: the position after each text's last non-padding
    token.

    Args:
        tokens (Tensor): ``(N, context_length)`` token ids, 0 for padding.

    Returns:
        Tensor: ``(N,)`` int64 lengths (0 for an all-padding row).
    """
    positions = torch.arange(1, tokens.shape[-1] + 1, device=tokens.device)
    return torch.where(tokens != 0, positions, 0).amax(dim=-1)


def prompt_batches(lengths: Tensor, batch_size: int, sort: bool = True) -> List[Tensor]:
    """Split N prompts into batches, longest prompts first when sorting.

    Sorted, each batch holds prompts of similar lengths, so trimming a batch
    to its own longest prompt (see ``encode_text_trimmed`` of
    :mod:`~mmmaskclip.models.text.text_encoder`) runs little
    padding: about ``sum(lengths)`` positions instead of
    ``N x max(lengths)``.

    Args:
        lengths (Tensor): ``(N,)`` tokenised lengths.
        batch_size (int): Prompts per batch.
        sort (bool): Sort by decreasing length (stable: ties keep their
            order); False cuts the prompts in their given order.

    Returns:
        list[Tensor]: The prompt indices of each batch; together a
        permutation of ``range(N)``.
    """
    if sort:
        order = torch.sort(lengths.cpu(), descending=True, stable=True).indices
    else:
        order = torch.arange(len(lengths))
    return list(order.split(batch_size))


@contextlib.contextmanager
def batch_progress(num_batches: int, num_prompts: int, enabled: bool = True, stream=None):
    """Show the progress of an encoding of more than one batch, on the main
    process only: mmengine's ``ProgressBar`` on a terminal, else a log line
    when it starts and one when it ends (no carriage returns in log files).

    Args:
        num_batches (int): Batches to run.
        num_prompts (int): Prompts in all, for the log lines.
        enabled (bool): False shows nothing.
        stream (file, optional): Where the bar goes. Defaults to stderr.

    Yields:
        callable: To call once after each batch.
    """
    from mmengine.dist import is_main_process
    from mmengine.logging import print_log
    from mmengine.utils import ProgressBar
    stream = stream or sys.stderr
    if not (enabled and num_batches > 1 and is_main_process()):
        yield lambda: None
    elif getattr(stream, 'isatty', lambda: False)():
        bar = ProgressBar(num_batches, file=stream)
        yield bar.update
        stream.write('\n')
        stream.flush()
    else:
        start = time.perf_counter()
        print_log(f'Encoding {num_prompts} prompts in {num_batches} batches...', 'current')
        yield lambda: None
        print_log(f'Encoded {num_prompts} prompts in {time.perf_counter() - start:.1f} s.',
                  'current')


def resolve_cache_dir(cache_dir: CacheDir = None) -> Optional[str]:
    """The folder of the text-embedding cache, or None when it is off.

    Args:
        cache_dir (str | bool | None): A folder; None or True for the default
            one (``$MMMASKCLIP_CACHE_DIR/text_embeddings``, else
            ``$XDG_CACHE_HOME/mmmaskclip/text_embeddings``, else
            ``~/.cache/mmmaskclip/text_embeddings``; the variable set to
            ``off`` turns the cache off); False for no disk cache.

    Returns:
        str | None: An absolute folder (not created here), or None.
    """
    if cache_dir is False:
        return None
    if cache_dir is None or cache_dir is True:
        root = os.environ.get(CACHE_ENV)
        if root is not None and root.strip().lower() in ('off', 'false', '0', 'none'):
            return None
        if not root:
            xdg = os.environ.get('XDG_CACHE_HOME') or osp.join('~', '.cache')
            root = osp.join(xdg, 'mmmaskclip')
        cache_dir = osp.join(root, SUBDIR)
    if not isinstance(cache_dir, (str, os.PathLike)):
        raise TypeError('cache_dir must be a folder, None (the default folder) or False '
                        f'(no disk cache), got {type(cache_dir).__name__}: {cache_dir!r}.')
    if not str(cache_dir).strip():
        raise ValueError('cache_dir must name a folder (None: the default folder, False: no '
                         f'disk cache), got {cache_dir!r}.')
    return osp.abspath(osp.expanduser(str(cache_dir)))


def _as_words(tensor: Tensor) -> Tuple[Tensor, bytes]:
    """The bytes of ``tensor`` read as int64 words (no copy when its storage
    offset allows), and the last ``nbytes % 8`` bytes that fill no word."""
    raw = tensor.detach().reshape(-1).view(torch.uint8)
    cut = raw.numel() - raw.numel() % 8
    try:
        words = raw[:cut].view(torch.int64)
    except RuntimeError:  # storage offset not a multiple of 8 bytes
        words = raw[:cut].clone().view(torch.int64)
    return words, raw[cut:].cpu().numpy().tobytes()


def tensor_fingerprint(tensor: Tensor) -> List:
    """Exact, cheap summary of one tensor's values (see
    :func:`weights_fingerprint`).

    Args:
        tensor (Tensor): Any tensor, on any device.

    Returns:
        list: JSON-able ``[shape, dtype, sha256]`` for a small tensor, else
        ``[shape, dtype, sums, samples, tail]``.
    """
    head = [list(tensor.shape), str(tensor.dtype)]
    if tensor.numel() <= SMALL_TENSOR:
        data = tensor.detach().reshape(-1).view(torch.uint8).cpu().numpy().tobytes()
        return head + [hashlib.sha256(data).hexdigest()]
    words, tail = _as_words(tensor)
    n = words.numel()
    body = n - n % (BLOCKS * RESIDUES)
    # B x R integer sums modulo 2**64 (int64 wraps): block b, word % R
    sums = words[:body].view(BLOCKS, -1, RESIDUES).sum(dim=1)
    rest = words[body:].sum()
    index = torch.arange(SAMPLES, device=words.device) * (n - 1) // (SAMPLES - 1)
    return head + [sums.flatten().tolist() + [int(rest)], words[index].tolist(), tail.hex()]


def weights_fingerprint(module: nn.Module) -> str:
    """A digest of every parameter and buffer of ``module``, cheap enough to
    compute on every cache lookup: one read of the weights at memory speed,
    no copy (0.03 s for the 124M parameters of ViT-L/14's text tower on a
    CPU core).

    Each tensor contributes its name, shape, dtype and, for a small tensor,
    the SHA-256 of its bytes. A larger tensor's bytes are read as int64
    words (two float32 values each) and summed modulo 2**64 in 16 x 16
    classes (block ``b`` of 16 contiguous blocks, word index modulo 16);
    64 evenly spaced words are kept verbatim.

    Why different weights do not collide: the sums are exact integer sums
    modulo 2**64, so they do not depend on the summation order, the thread
    count or the device (no rounding), and the bytes determine the values.
    Changing any single element, however little, changes its word by a
    non-zero amount smaller than 2**64 in magnitude, so its class's sum
    changes: one changed weight always changes the key. A collision needs
    several changes whose word differences cancel exactly, modulo 2**64, in
    every one of the 256 classes of the tensor while leaving the 64 samples
    untouched. Another checkpoint, a fine-tuning or another random
    initialisation changes nearly every element by unrelated amounts; that
    thousands of 64-bit sums all cancel is far beyond chance. Swapped
    elements (a transposed or permuted weight) keep a plain sum but move
    values across blocks, residue classes or samples (or reorder the two
    halves of a word), and are caught unless both words sit in the same
    block and class and off the samples.

    Args:
        module (nn.Module): The text tower.

    Returns:
        str: A SHA-256 hex digest.
    """
    tensors = dict(module.named_parameters())
    tensors.update(module.named_buffers())
    parts = {name: tensor_fingerprint(tensor) for name, tensor in sorted(tensors.items())}
    return _digest(parts)


#: Strings whose tokens characterise a tokenizer: case, punctuation, accents,
#: apostrophes, digits, and one longer than any context (truncation).
TOKENIZER_PROBES = ('', 'a photo of a T-Shirt!', "children's bed", 'Crème brûlée, café',
                    'HELLO   world 123 ,.;:', ' '.join(['traffic light'] * 60))


def tokenizer_fingerprint(tokenizer) -> str:
    """A digest of what ``tokenizer`` does: its class, context length and the
    tokens it gives :data:`TOKENIZER_PROBES` (so a tokenizer that cleans,
    splits or truncates text differently gets another key)."""
    tokens = tokenizer(list(TOKENIZER_PROBES))
    tokens = tokens.tolist() if isinstance(tokens, Tensor) else tokens
    kind = type(tokenizer)
    return _digest(
        dict(
            cls=f'{kind.__module__}.{kind.__qualname__}',
            context_length=getattr(tokenizer, 'context_length', None),
            tokens=tokens))


#: Attributes of an open_clip text tower that change embeddings but not
#: its ``repr`` or weights.
MODEL_ATTRS = ('text_pool_type', 'text_eos_id', 'context_length', 'vocab_size', 'pad_id')


def model_fingerprint(module: nn.Module) -> str:
    """A digest of the text tower's architecture: its class, its ``repr``
    (layers, widths, activations, norms) and :data:`MODEL_ATTRS`."""
    kind = type(module)
    return _digest(
        dict(
            cls=f'{kind.__module__}.{kind.__qualname__}',
            repr=repr(module),
            attrs={name: repr(getattr(module, name, None))
                   for name in MODEL_ATTRS}))


def vocabulary_key(clip: nn.Module, tokenizer, templates: Sequence[str], class_names: Sequence[str],
                   split_synonyms: bool) -> str:
    """The cache key of a vocabulary's embeddings.

    Args:
        clip (nn.Module): The text tower (weights read now, so weights loaded
            after the encoder was built are taken into account).
        tokenizer (callable): Its tokenizer.
        templates (Sequence[str]): Prompt templates, in order.
        class_names (Sequence[str]): The class names exactly as given (order
            and commas included).
        split_synonyms (bool): Whether names are split at commas.

    Returns:
        str: A SHA-256 hex digest (the file name stem).
    """
    return _digest(
        dict(
            format=FORMAT,
            output=OUTPUT,
            model=model_fingerprint(clip),
            weights=weights_fingerprint(clip),
            tokenizer=tokenizer_fingerprint(tokenizer),
            templates=list(templates),
            names=list(class_names),
            split_synonyms=bool(split_synonyms)))


def _digest(obj) -> str:
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(',', ':'))
    return hashlib.sha256(text.encode('utf-8')).hexdigest()


class TextEmbeddingCache:
    """A folder of ``<key>.pt`` files holding C x E float32 CPU embeddings.

    Args:
        folder (str): The cache folder (created on the first write).
    """

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self._write_warned = False

    def path(self, key: str) -> str:
        """The file of ``key``."""
        return osp.join(self.folder, f'{key}.pt')

    def load(self, key: str, shape: Tuple[int, int]) -> Optional[Tensor]:
        """The embeddings stored under ``key``, or None if there are none or
        the file is unreadable or does not match (then a warning says so).

        Args:
            key (str): A :func:`vocabulary_key`.
            shape (tuple[int, int]): The expected ``(C, E)``.

        Returns:
            Tensor | None: C x E float32 embeddings on the CPU.
        """
        path = self.path(key)
        if not osp.isfile(path):
            return None
        try:
            data = torch.load(path, map_location='cpu', weights_only=True)
            embeds = data.get('embeddings') if isinstance(data, dict) else None
            if not isinstance(embeds, Tensor) or data.get('key') != key or \
                    embeds.dtype != torch.float32 or tuple(embeds.shape) != tuple(shape):
                raise ValueError(f'it does not hold {tuple(shape)} float32 embeddings of '
                                 'this key')
        except Exception as err:  # truncated, corrupt, foreign or mismatched file
            warnings.warn(f'Ignoring the unreadable text-embedding cache file {path} '
                          f'({type(err).__name__}: {err}); recomputing it.')
            return None
        return embeds

    def save(self, key: str, embeds: Tensor) -> None:
        """Store ``embeds`` under ``key`` atomically (temporary file in the
        cache folder, then ``os.replace``); a folder that cannot be written
        gives one warning per cache object, not an error."""
        payload: Dict = dict(key=key, embeddings=embeds.detach().float().cpu().clone())
        tmp = None
        try:
            os.makedirs(self.folder, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=f'.{key[:16]}.', suffix='.tmp')
            with os.fdopen(fd, 'wb') as f:
                torch.save(payload, f)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path(key))
        except OSError as err:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            if not self._write_warned:
                self._write_warned = True
                warnings.warn(f'Could not write the text-embedding cache in {self.folder} '
                              f'({type(err).__name__}: {err}); embeddings are not cached on '
                              'disk.')
