# Copyright (c) mmmaskclip contributors. All rights reserved.
from .drawing import score_text
from .export import export_prediction, instances_to_list, panoptic_to_coco, semantic_map
from .inference_pipeline import inference_config
from .mask_classification import (MaskClassification, check_class_names, classify_masks,
                                  init_mask_classifier, load_image, load_masks)
from .mask_inputs import MASK_TYPES, load_mask_logits
from .maskclip_inferencer import MaskCLIPInferencer
from .proposals import dump_proposals, proposer_cfg_of, split_dataset_cfg
from .visualization import draw_mask_classification
from .vocabularies import (PRESETS, ClassVocabulary, build_vocabulary, per_image_vocabularies,
                           read_vocabulary_file)

__all__ = [
    'MaskCLIPInferencer', 'MaskClassification', 'check_class_names', 'classify_masks',
    'draw_mask_classification', 'init_mask_classifier', 'load_image', 'load_masks',
    'dump_proposals', 'proposer_cfg_of', 'split_dataset_cfg', 'PRESETS', 'ClassVocabulary',
    'build_vocabulary', 'per_image_vocabularies', 'read_vocabulary_file', 'export_prediction',
    'instances_to_list', 'panoptic_to_coco', 'semantic_map', 'inference_config', 'MASK_TYPES',
    'load_mask_logits', 'score_text'
]
