# Copyright (c) mmmaskclip contributors. All rights reserved.
from .maskclip import MaskCLIP

__all__ = ['MaskCLIP']
