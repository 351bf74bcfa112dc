# Copyright (c) mmmaskclip contributors. All rights reserved.
from .embedding_cache import TextEmbeddingCache, resolve_cache_dir, vocabulary_key
from .templates import NAMED_TEMPLATES, VILD_TEMPLATES, imagenet_templates, resolve_templates
from .text_encoder import MaskCLIPTextEncoder, text_only_clip

__all__ = [
    'MaskCLIPTextEncoder', 'text_only_clip', 'resolve_templates', 'imagenet_templates',
    'VILD_TEMPLATES', 'NAMED_TEMPLATES', 'TextEmbeddingCache', 'resolve_cache_dir', 'vocabulary_key'
]
