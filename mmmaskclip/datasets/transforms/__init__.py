# Copyright (c) mmmaskclip contributors. All rights reserved.
from .class_agnostic import ClassAgnosticSegments

__all__ = ['ClassAgnosticSegments']
