# Copyright (c) mmmaskclip contributors. All rights reserved.
from .class_agnostic import ClassAgnosticSegments
from .seg_map_path import SetSegMapPath

__all__ = ['ClassAgnosticSegments', 'SetSegMapPath']
