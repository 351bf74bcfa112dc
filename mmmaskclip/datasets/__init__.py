# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Data transforms (and datasets) of mmmaskclip, registered into mmdet's
registries on import."""
from .transforms import *  # noqa: F401,F403
