# Copyright (c) mmmaskclip contributors. All rights reserved.
from .backbones import *  # noqa: F401,F403
from .clip_loader import CLIPWeightsNotFoundError, build_clip_model
from .detectors import *  # noqa: F401,F403
from .heads import *  # noqa: F401,F403
from .layers import *  # noqa: F401,F403
from .post_processing import *  # noqa: F401,F403
from .proposers import *  # noqa: F401,F403
from .text import *  # noqa: F401,F403

__all__ = ['CLIPWeightsNotFoundError', 'build_clip_model']
