# Copyright (c) mmmaskclip contributors. All rights reserved.
from .mask_classifier import OpenVocabMaskClassifier

__all__ = ['OpenVocabMaskClassifier']
