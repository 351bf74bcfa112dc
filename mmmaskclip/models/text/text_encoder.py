# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Frozen CLIP text tower that embeds an open vocabulary of class names."""
import copy
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmdet.utils import OptMultiConfig
from mmengine.model import BaseModule
from torch import Tensor

from ..clip_loader import build_clip_model, clip_tokenizer, freeze
from .embedding_cache import (CacheDir, TextEmbeddingCache, batch_progress, prompt_batches,
                              resolve_cache_dir, token_lengths, vocabulary_key)
from .templates import TemplatesType, resolve_templates, warn_truncated_prompts


def text_only_clip(model: nn.Module, inplace: bool = False) -> nn.Module:
    """Return ``model`` without its image tower (``visual`` set to None).

    Args:
        model (nn.Module): An open_clip ``CLIP``/``CustomTextCLIP``.
        inplace (bool): Drop ``model.visual`` from ``model`` itself. Otherwise
            return a copy of the text tower only (the image tower is never
            copied) and leave ``model`` untouched, so that a model owned by
            the caller (e.g. shared with an image backbone) is neither
            stripped, frozen, nor moved by the text encoder. Defaults to
            False.

    Returns:
        nn.Module: A module whose ``encode_text`` works as ``model``'s.
    """
    if not inplace:
        text = copy.copy(model)
        # copy.copy shares the registries: give the copy its own ones, without
        # the image tower, then copy the text weights.
        for attr in ('_modules', '_parameters', '_buffers', '_non_persistent_buffers_set'):
            text.__dict__[attr] = copy.copy(model.__dict__[attr])
        text._modules.pop('visual', None)
        model = copy.deepcopy(text)
    model._modules['visual'] = None  # frees the tower when inplace
    return model


#: Pooling rules that read no token after the end of text: with a causal
#: mask, cutting the padding changes no pooled feature.
TRIM_SAFE_POOLING = ('argmax', 'eos', 'first')


def can_trim_padding(clip: nn.Module, tokenizer) -> bool:
    """Whether :func:`encode_text_trimmed` equals ``clip.encode_text``: an
    open_clip ``CLIP`` text tower with a causal mask, a pooling rule of
    :data:`TRIM_SAFE_POOLING` and open_clip's tokenizer (padding 0)."""
    import open_clip
    mask = getattr(clip, 'attn_mask', None)
    if not isinstance(clip, open_clip.CLIP) or not isinstance(mask, Tensor) or \
            not isinstance(tokenizer, open_clip.SimpleTokenizer):
        return False
    causal = torch.full_like(mask, float('-inf')).triu(1)
    return torch.equal(mask, causal) and clip.text_pool_type in TRIM_SAFE_POOLING


def encode_text_trimmed(clip: nn.Module, tokens: Tensor) -> Tensor:
    """``clip.encode_text(tokens)`` on the tokens up to the longest text.

    CLIP's text transformer is causal, so the padding after the last end of
    text never reaches a pooled token: running ``L`` positions instead of the
    context length (77) gives the same features for ``(L / 77)`` of the work.
    Only for towers where :func:`can_trim_padding` holds.

    Args:
        clip (nn.Module): an open_clip ``CLIP``.
        tokens (Tensor): ``(N, context_length)`` token ids, 0 for padding.

    Returns:
        Tensor: ``(N, E)`` unnormalised text features.
    """
    used = (tokens != 0).any(dim=0).nonzero()
    length = int(used.max()) + 1 if len(used) else 1
    tokens = tokens[:, :length]
    cast_dtype = clip.transformer.get_cast_dtype()
    x = clip.token_embedding(tokens).to(cast_dtype) + clip.positional_embedding[:length].to(
        cast_dtype)
    x = clip.ln_final(clip.transformer(x, attn_mask=clip.attn_mask[:length, :length]))
    from open_clip.transformer import text_global_pool
    x = text_global_pool(x, tokens, clip.text_pool_type, getattr(clip, 'text_eos_id', None))
    if clip.text_projection is None:
        return x
    if isinstance(clip.text_projection, nn.Linear):
        return clip.text_projection(x)
    return x @ clip.text_projection


@MODELS.register_module()
class MaskCLIPTextEncoder(BaseModule):
    """Frozen CLIP text encoder producing one embedding per class name.

    The text tower of an open_clip model is kept (the image tower is dropped)
    and frozen; it always stays in eval mode. Class names are turned into
    prompts with templates and encoded into L2-normalised class embeddings,
    cached per vocabulary.

    Embedding rule. A class name may list comma-separated synonyms
    (``'wall, brick wall'``); they are split, stripped, and empty pieces are
    dropped. For a synonym ``s`` and a template ``t``::

        e(s, t) = normalize(encode_text(tokenize(t.format(s))))
        e(s)    = normalize(mean_t e(s, t))    # template ensemble
        e(c)    = normalize(mean_s e(s))       # synonym ensemble of class c

    With one template and no synonyms, ``e(c)`` is exactly open_clip's
    ``encode_text(tokenize(name), normalize=True)``.

    Large vocabularies. Prompts are sorted by tokenised length and cut into
    batches of ``batch_size``; each batch runs the causal text tower only up
    to its own longest prompt (see :func:`encode_text_trimmed`), and the
    embeddings come back in the original order. More than one batch shows a
    progress bar (log lines when stderr is not a terminal). Prompts longer
    than the tokenizer's context (CLIP: 77 tokens) are truncated, with an
    ``InputWarning`` naming them when their embeddings are computed.

    Caches. The last ``cache_size`` vocabularies are kept in memory; all
    are also kept on disk in ``cache_dir``, under a key of the text tower's
    architecture and weights, the tokenizer, the templates, the names (in
    order) and the synonym splitting (see
    :mod:`~mmmaskclip.models.text.embedding_cache`), so that other runs and
    other processes load them instead of computing them. Embeddings computed
    on one device are loaded on another (they agree to float rounding).

    Args:
        clip (dict | nn.Module): An open_clip model, or a config understood
            by :func:`~mmmaskclip.models.clip_loader.build_clip_model`, e.g.
            ``dict(name='ViT-L-14-336', pretrained='openai')``. A model passed
            in is left untouched: its text tower is copied (see
            :func:`text_only_clip`).
        templates (str | Sequence[str] | None): Prompt templates: None or
            ``'{}'`` (raw class name), a string with ``{}``, a list of such
            strings, or a named set ``'vild'`` (14) / ``'imagenet'`` (80).
            Defaults to None.
        cache_size (int): Number of vocabularies whose embeddings are kept in
            an LRU cache in memory; 0 keeps none (the disk cache is set by
            ``cache_dir``). Defaults to 16.
        batch_size (int): Prompts encoded per text-tower call. Defaults to
            256.
        tokenizer (str, optional): open_clip model name whose tokenizer to
            use; by default the one of the CLIP's own name or config (see
            :func:`~mmmaskclip.models.clip_loader.clip_tokenizer`).
        split_synonyms (bool): split names at commas into synonyms whose
            embeddings are averaged; False embeds each name verbatim as one
            string (the authors' setting for ADE20K's comma-joined names).
            Defaults to True.
        cache_dir (str | bool, optional): Folder of the on-disk embedding
            cache; None for the default folder,
            ``$MMMASKCLIP_CACHE_DIR/text_embeddings`` if that variable is set
            (``off``: no cache), else ``~/.cache/mmmaskclip/text_embeddings``;
            False for no disk cache. Defaults to None.
        sort_by_length (bool): Sort prompts by tokenised length before
            cutting batches (only for towers that trim padding). Defaults to
            True.
        progress (bool): Show progress when encoding more than one batch.
            Defaults to True.
        init_cfg (dict | list[dict], optional): Initialization config.
            Defaults to None.
    """

    def __init__(self,
                 clip: Union[dict, nn.Module],
                 templates: TemplatesType = None,
                 cache_size: int = 16,
                 batch_size: int = 256,
                 tokenizer: Optional[str] = None,
                 split_synonyms: bool = True,
                 cache_dir: CacheDir = None,
                 sort_by_length: bool = True,
                 progress: bool = True,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if not isinstance(cache_size, int) or cache_size < 0:
            raise ValueError(f'cache_size must be an int >= 0, got {cache_size!r}.')
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f'batch_size must be an int >= 1, got {batch_size!r}.')
        self.templates: Tuple[str, ...] = resolve_templates(templates)
        self.cache_size = cache_size
        self.batch_size = batch_size
        self.sort_by_length = sort_by_length
        self.progress = progress
        self.cache_dir = resolve_cache_dir(cache_dir)
        self.disk_cache = TextEmbeddingCache(self.cache_dir) if self.cache_dir else None

        if isinstance(clip, nn.Module):  # copy first: leave the caller's alone
            model = build_clip_model(text_only_clip(clip))
        else:
            model = text_only_clip(build_clip_model(clip), inplace=True)
        self.tokenizer = clip_tokenizer(model, tokenizer)
        self.split_names = split_synonyms
        self.clip = freeze(model)
        self.trim_padding = can_trim_padding(self.clip, self.tokenizer)
        self._cache: 'OrderedDict[Tuple[str, ...], Tensor]' = OrderedDict()
        self._cache_key: Optional[Tuple[torch.device, torch.dtype]] = None
        self._embed_dim = self._encode_prompts(['']).shape[-1]

    @property
    def embed_dim(self) -> int:
        """int: Dimension E of the joint image-text embedding space."""
        return self._embed_dim

    @property
    def device(self) -> torch.device:
        """torch.device: Where the text tower's weights are."""
        return next(self.clip.parameters()).device

    def train(self, mode: bool = True) -> 'MaskCLIPTextEncoder':
        """Keep the frozen text tower in eval mode whatever ``mode`` is."""
        return super().train(False)

    def clear_cache(self) -> None:
        """Forget the vocabulary embeddings cached in memory (the files of
        the disk cache stay: delete ``cache_dir`` to drop them)."""
        self._cache.clear()
        self._cache_key = None

    @staticmethod
    def split_synonyms(class_names: Sequence[str], split: bool = True) -> List[List[str]]:
        """Validate a vocabulary and split each name into its synonyms.

        Args:
            class_names (Sequence[str]): C class names, each possibly holding
                comma-separated synonyms.
            split (bool): split at commas; False keeps each name verbatim as
                its only "synonym".

        Returns:
            list[list[str]]: For each class, its non-empty stripped synonyms
            (``[name]`` when not splitting).

        Raises:
            TypeError: ``class_names`` is a bare string or not a sequence, or
                an entry is not a string.
            ValueError: The vocabulary is empty, or an entry has no synonym
                left after splitting and stripping.
        """
        if isinstance(class_names, str) or not isinstance(class_names, Sequence):
            raise TypeError('class_names must be a sequence of str (a list of '
                            f'class names), got {type(class_names).__name__}: '
                            f'{class_names!r}.')
        if len(class_names) == 0:
            raise ValueError('class_names is empty: the vocabulary needs at '
                             'least one class name.')
        synonyms = []
        for i, name in enumerate(class_names):
            if not isinstance(name, str):
                raise TypeError(f'class_names[{i}] must be a str, got '
                                f'{type(name).__name__}: {name!r}.')
            parts = [part.strip() for part in name.split(',')] if split else [name]
            parts = [part for part in parts if part.strip()]
            if not parts:
                raise ValueError(f'class_names[{i}] ({name!r}) holds no class '
                                 'name after splitting on commas and stripping.')
            synonyms.append(parts)
        return synonyms

    def _encode_prompts(self, prompts: List[str]) -> Tensor:
        """Encode prompts in batches of ``batch_size`` (length-sorted when
        trimming, see :func:`prompt_batches`).

        Args:
            prompts (list[str]): N prompts.

        Returns:
            Tensor: N x E L2-normalised float32 prompt embeddings, in the
            order of ``prompts``.
        """
        device = self.device
        tokens = self.tokenizer(prompts)
        warn_truncated_prompts(self.tokenizer, prompts, tokens)
        sort = self.trim_padding and self.sort_by_length
        batches = prompt_batches(token_lengths(tokens), self.batch_size, sort)
        embeds = []
        # Embeddings are cached, so keep them independent of any autocast
        # context of the caller: compute in the tower's own dtype.
        with torch.no_grad(), torch.autocast(device.type, enabled=False), \
                batch_progress(len(batches), len(prompts), self.progress) as update:
            for index in batches:
                batch = tokens[index].to(device)
                feats = encode_text_trimmed(self.clip, batch) if self.trim_padding else \
                    self.clip.encode_text(batch)
                embeds.append(F.normalize(feats.float(), dim=-1))
                update()
        embeds = torch.cat(embeds)
        order = torch.cat(batches).to(embeds.device)
        return torch.empty_like(embeds).index_copy_(0, order, embeds)

    def encode(self, class_names: Sequence[str]) -> Tensor:
        """Embed a vocabulary without looking at the cache.

        Args:
            class_names (Sequence[str]): C class names (see
                :meth:`split_synonyms`).

        Returns:
            Tensor: C x E L2-normalised float32 class embeddings.
        """
        return self._encode_synonyms(self.split_synonyms(class_names, self.split_names))

    def _encode_synonyms(self, synonyms: List[List[str]]) -> Tensor:
        """Embed C classes given as lists of synonyms (see :meth:`encode`)."""
        # Encode each distinct synonym once even if several classes share it.
        unique: Dict[str, int] = {}
        for parts in synonyms:
            for part in parts:
                unique.setdefault(part, len(unique))
        num_templates = len(self.templates)
        prompts = [t.format(s) for s in unique for t in self.templates]
        embeds = self._encode_prompts(prompts)  # (S * T) x E
        embeds = embeds.view(len(unique), num_templates, -1)
        syn_embeds = F.normalize(embeds.mean(dim=1), dim=-1)  # S x E

        index = torch.tensor([unique[p] for parts in synonyms for p in parts],
                             device=syn_embeds.device)
        owner = torch.tensor([c for c, parts in enumerate(synonyms) for _ in parts],
                             device=syn_embeds.device)
        class_embeds = syn_embeds.new_zeros(len(synonyms), syn_embeds.shape[-1])
        class_embeds.index_add_(0, owner, syn_embeds[index])
        # normalize(sum_s e(s)) == normalize(mean_s e(s))
        return F.normalize(class_embeds, dim=-1)

    def cache_key(self, class_names: Sequence[str]) -> str:
        """The on-disk cache key of a vocabulary (reads the weights now).

        Args:
            class_names (Sequence[str]): C class names.

        Returns:
            str: A SHA-256 hex digest (see
            :func:`~mmmaskclip.models.text.embedding_cache.vocabulary_key`).
        """
        return vocabulary_key(self.clip, self.tokenizer, self.templates, class_names,
                              self.split_names)

    def _load_or_encode(self, class_names: Sequence[str], synonyms: List[List[str]]) -> Tensor:
        """Embeddings from the disk cache, else computed (and stored)."""
        if self.disk_cache is None:
            return self._encode_synonyms(synonyms)
        key = self.cache_key(class_names)
        embeds = self.disk_cache.load(key, (len(synonyms), self.embed_dim))
        if embeds is not None:
            return embeds.to(self.device)
        embeds = self._encode_synonyms(synonyms)
        self.disk_cache.save(key, embeds)
        return embeds

    def forward(self, class_names: Sequence[str]) -> Tensor:
        """Embed a vocabulary, using the in-memory LRU cache, then the disk
        cache.

        Args:
            class_names (Sequence[str]): C class names; commas separate
                synonyms of one class, e.g. ``['person', 'wall, brick wall']``.

        Returns:
            Tensor: C x E L2-normalised float32 class embeddings on the text
            tower's device (a fresh tensor; the cached copy is not exposed).

        Raises:
            TypeError | ValueError: A malformed vocabulary; the message names
                the offending entry (see :meth:`split_synonyms`).
        """
        synonyms = self.split_synonyms(class_names, self.split_names)
        if self.cache_size == 0:
            return self._load_or_encode(class_names, synonyms)
        param = next(self.clip.parameters())
        state = (param.device, param.dtype)
        if state != self._cache_key:  # moved to another device or dtype
            self._cache.clear()
            self._cache_key = state
        key = tuple(class_names)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key].clone()
        embeds = self._load_or_encode(class_names, synonyms)
        self._cache[key] = embeds
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return embeds.clone()

    def extra_repr(self) -> str:
        return (f'templates={len(self.templates)}, split_synonyms={self.split_names}, '
                f'embed_dim={self.embed_dim}, '
                f'cache_size={self.cache_size}, cache_dir={self.cache_dir}, '
                f'batch_size={self.batch_size}, sort_by_length={self.sort_by_length}')
