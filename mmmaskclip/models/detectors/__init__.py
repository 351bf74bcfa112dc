# Copyright (c) mmmaskclip contributors. All rights reserved.
from .mask_classifier import OpenVocabMaskClassifier
from .maskclip import MaskCLIP

__all__ = ['MaskCLIP', 'OpenVocabMaskClassifier']
