# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Build open_clip models from a config: an open_clip name + pretrained tag,
a local checkpoint file, an OpenMMLab model-zoo URL, or an architecture dict.

Offline (these machines, CI), a tag or URL that is not cached fails with one
:class:`CLIPWeightsNotFoundError` that says what to download and where to put
it, instead of a deep traceback from the hub client.
"""
import contextlib
import os.path as osp
import socket
import threading
from typing import Optional, Union
from urllib.parse import urlparse

import torch
import torch.nn as nn

from ..utils import checkpoint_error, user_error

ClipConfig = Union[dict, nn.Module]


@user_error
class CLIPWeightsNotFoundError(RuntimeError):
    """Raised when CLIP weights can be neither found locally nor downloaded."""


def _is_url(path: str) -> bool:
    return path.startswith(('http://', 'https://'))


def _tag_hint(name: str, tag: str, cache_dir: Optional[str]) -> str:
    """Where a tag's weights come from and where a download would be put."""
    import open_clip
    cfg = open_clip.get_pretrained_cfg(name, tag) or {}
    if cfg.get('hf_hub'):
        repo, filename = osp.split(cfg['hf_hub'])
        filename = filename or 'open_clip_pytorch_model.bin'
        from huggingface_hub import constants
        where = cache_dir or constants.HF_HUB_CACHE
        return (f'download {filename} of the Hugging Face hub repo {repo} (a machine with '
                f'network fills {where} by running this once), or put that file anywhere '
                f"and pass pretrained='/path/to/{filename}'")
    source = cfg.get('url') or '?'
    where = cache_dir or osp.expanduser('~/.cache/clip')
    return (f'download {source} into {where}, or put it anywhere and pass '
            f"pretrained='/path/to/{osp.basename(source)}'")


def _hub_reachable(endpoint: str, timeout: float = 3.0) -> bool:
    """Whether the host of ``endpoint`` (the hub, or the mirror named by
    ``HF_ENDPOINT``) resolves within ``timeout`` seconds (no traffic sent)."""
    host = urlparse(endpoint).hostname or endpoint
    result = []

    def resolve():
        try:
            socket.getaddrinfo(host, 443)
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=resolve, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


@contextlib.contextmanager
def _offline_hub_if_unreachable():
    """Use only the local cache when the hub cannot be reached, instead of
    letting the hub client retry for a minute before failing."""
    try:
        from huggingface_hub import constants
    except ImportError:
        yield
        return
    if constants.HF_HUB_OFFLINE or _hub_reachable(constants.ENDPOINT):
        yield
        return
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = False


def _load_url_weights(model: nn.Module, url: str) -> None:
    """Load a model-zoo checkpoint (mmengine caches it in torch hub's dir)."""
    from mmengine.runner.checkpoint import CheckpointLoader
    target = osp.join(torch.hub.get_dir(), 'checkpoints', osp.basename(url))
    try:
        ckpt = CheckpointLoader.load_checkpoint(url, map_location='cpu')
    except Exception as err:  # no network, HTTP error, truncated file
        raise CLIPWeightsNotFoundError(
            f'Could not download CLIP weights from {url} ({type(err).__name__}: '
            f'{err}); download that file and put it at {target}, or pass '
            f"pretrained='/path/to/{osp.basename(url)}'.") from err
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else ckpt
    model.load_state_dict(state, strict=True)


@contextlib.contextmanager
def _local_weights_errors(pretrained: Optional[str]):
    """A local CLIP weights file that fails to load (empty, truncated,
    garbage, another architecture) raises one sentence naming it."""
    try:
        yield
    except Exception as err:  # noqa: B902  (re-raised unless a local file)
        error = checkpoint_error(pretrained, err, 'CLIP weights')
        if error is None:
            raise
        raise error from err


def build_clip_model(clip: ClipConfig) -> nn.Module:
    """Build (or pass through) a frozen-ready open_clip model.

    Args:
        clip (dict | nn.Module): An already built open_clip ``CLIP`` model, or
            a dict with either

            - ``name`` (str): an open_clip model name such as
              ``'ViT-L-14-336'`` (or ``'hf-hub:org/repo'``), with optional
              ``pretrained``: an open_clip tag (``'openai'``), a local file
              path, an ``http(s)://`` URL (e.g. an OpenMMLab model-zoo
              checkpoint), or None for random weights; or
            - ``model_cfg`` (dict): keyword arguments of ``open_clip.CLIP``
              (``embed_dim``, ``vision_cfg``, ``text_cfg``, ...) with an
              optional ``pretrained`` file path or URL.

            Optional ``cache_dir`` (str) and, with ``name``, any other
            keyword of ``open_clip.create_model`` (e.g. ``force_quick_gelu``,
            which is switched on by itself for tags trained with QuickGELU
            such as ``'openai'``) are handed to open_clip.

    Returns:
        nn.Module: the open_clip model in eval mode, on the CPU. A model
        passed in is returned as is (switched to eval mode, not copied).
    """
    if isinstance(clip, nn.Module):
        return clip.eval()
    import open_clip
    clip = dict(clip)
    name = clip.pop('name', None)
    model_cfg = clip.pop('model_cfg', None)
    pretrained = clip.pop('pretrained', None)
    cache_dir = clip.pop('cache_dir', None)
    if clip and model_cfg is not None:
        raise TypeError(f'Unknown CLIP config keys: {sorted(clip)}; a config with '
                        "'model_cfg' takes only 'pretrained' besides.")
    if (name is None) == (model_cfg is None):
        raise ValueError("A CLIP config needs exactly one of 'name' (an open_clip "
                         "model name) and 'model_cfg' (open_clip.CLIP kwargs).")
    if name is not None and ':' not in name and name not in open_clip.list_models():
        raise ValueError(f"Unknown open_clip model name '{name}'; see open_clip.list_models() "
                         "(e.g. 'ViT-L-14-336', 'ViT-B-16').")
    url = pretrained if pretrained and _is_url(pretrained) else None
    if pretrained and not url and not osp.isfile(pretrained) and (
            model_cfg is not None or not open_clip.get_pretrained_cfg(name, pretrained)):
        tags = open_clip.list_pretrained_tags_by_model(name) if name else []
        raise CLIPWeightsNotFoundError(
            f"CLIP weights '{pretrained}' are neither a file nor an open_clip tag" +
            (f" of '{name}' (known tags: {tags})." if name else '.'))

    if model_cfg is not None:
        model = open_clip.CLIP(**model_cfg)
        if pretrained and not url:
            with _local_weights_errors(pretrained):
                open_clip.load_checkpoint(model, pretrained)
    else:
        try:
            tag_cfg = open_clip.get_pretrained_cfg(name, pretrained) if pretrained else {}
            if (tag_cfg or {}).get('quick_gelu'):
                # e.g. OpenAI's weights need QuickGELU; open_clip only warns.
                clip.setdefault('force_quick_gelu', True)
            with _offline_hub_if_unreachable(), _local_weights_errors(pretrained):
                model = open_clip.create_model(
                    name, pretrained=None if url else pretrained, cache_dir=cache_dir, **clip)
        except RuntimeError as err:
            if pretrained and not osp.isfile(pretrained):
                raise CLIPWeightsNotFoundError(
                    f"Could not get open_clip weights '{pretrained}' of '{name}' "
                    f'(offline, or not cached): {_tag_hint(name, pretrained, cache_dir)}.') from err
            raise
    if url:
        _load_url_weights(model, url)
    setattr(model, TOKENIZER_ATTR,
            name if name is not None else dict(model_cfg.get('text_cfg') or {}))
    return model.eval()


#: Attribute through which a model built here remembers its tokenizer: an
#: open_clip model name, or the ``text_cfg`` of a ``model_cfg``.
TOKENIZER_ATTR = '_mmmaskclip_tokenizer'
#: Vocabulary size of CLIP's byte-pair encoding (open_clip's SimpleTokenizer).
CLIP_BPE_VOCAB_SIZE = 49408


def _tokenizer_from_text_cfg(text_cfg: dict):
    """The tokenizer a ``text_cfg`` asks for, as ``open_clip.get_tokenizer``
    derives it from a named model's config."""
    import open_clip
    context_length = text_cfg.get('context_length', 77)
    kwargs = dict(text_cfg.get('tokenizer_kwargs') or {})
    hf_name = text_cfg.get('hf_tokenizer_name')
    if not hf_name:
        return open_clip.SimpleTokenizer(context_length=context_length, **kwargs)
    return open_clip.tokenizer.HFTokenizer(
        hf_name,
        context_length=context_length,
        tokenizer_mode=text_cfg.get('tokenizer_mode'),
        **kwargs)


def clip_tokenizer(model: nn.Module, tokenizer: Optional[str] = None):
    """The tokenizer that matches ``model``'s text tower.

    Args:
        model (nn.Module): an open_clip model; one built by
            :func:`build_clip_model` knows its model name or ``text_cfg``.
        tokenizer (str, optional): an open_clip model name (or
            ``'hf-hub:...'`` / ``'local-dir:...'``) whose tokenizer to use,
            overriding what the model knows.

    Returns:
        callable: ``open_clip.get_tokenizer(name)`` for named models; the
        tokenizer a ``model_cfg``'s ``text_cfg`` asks for (CLIP's BPE with its
        ``tokenizer_kwargs``, or its ``hf_tokenizer_name``); CLIP's BPE for
        other models whose text vocabulary is CLIP's.

    Raises:
        ValueError: for a model of unknown origin whose text tower is not
            CLIP's (its tokenizer cannot be guessed), or a tokenizer that
            cannot be built (e.g. a Hugging Face one offline).
    """
    import open_clip
    spec = tokenizer or getattr(model, TOKENIZER_ATTR, None)
    try:
        if isinstance(spec, str):
            return open_clip.get_tokenizer(spec)
        if isinstance(spec, dict):
            return _tokenizer_from_text_cfg(spec)
    except Exception as err:  # missing package, no network, unknown name
        raise ValueError(f'Could not build the tokenizer of this CLIP ({spec!r}): '
                         f'{type(err).__name__}: {err}') from err
    text = getattr(model, 'text', model)
    if getattr(text, 'vocab_size', None) == CLIP_BPE_VOCAB_SIZE:
        return open_clip.SimpleTokenizer(context_length=model.context_length)
    raise ValueError(
        f'Cannot tell which tokenizer the text tower of this {type(model).__name__} needs '
        "(not CLIP's BPE): build it from a config (clip=dict(name=...)) or pass "
        "text_encoder=dict(tokenizer='<open_clip model name>').")


def freeze(module: nn.Module) -> nn.Module:
    """Set ``requires_grad=False`` on every parameter and switch to eval."""
    for param in module.parameters():
        param.requires_grad_(False)
    return module.eval()


def with_clip(cfg: dict, clip_model: nn.Module) -> dict:
    """A copy of a sub-module config that uses ``clip_model`` unless the
    config names its own ``clip`` (one CLIP shared by both towers' users)."""
    cfg = dict(cfg)
    cfg.setdefault('clip', clip_model)
    return cfg
