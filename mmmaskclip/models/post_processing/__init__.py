# Copyright (c) mmmaskclip contributors. All rights reserved.
from .universal import INSTANCE_OFFSET, UniversalPostProcessor, void_column

__all__ = ['INSTANCE_OFFSET', 'UniversalPostProcessor', 'void_column']
