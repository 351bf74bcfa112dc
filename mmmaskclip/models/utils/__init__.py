# Copyright (c) mmmaskclip contributors. All rights reserved.
from .masks import (PAD_MASK_LOGIT, as_mask_logits, prepare_mask_logits, resize_mask_logits,
                    shrinks_much, stack_mask_logits)
from .padding import fill_padding
from .vocabulary import Vocabulary, first_occurrences, gt_segments, name_key, parse_class_names

__all__ = [
    'PAD_MASK_LOGIT', 'as_mask_logits', 'prepare_mask_logits', 'resize_mask_logits', 'shrinks_much',
    'stack_mask_logits', 'fill_padding', 'Vocabulary', 'first_occurrences', 'gt_segments',
    'name_key', 'parse_class_names'
]
