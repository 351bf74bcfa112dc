# Copyright (c) mmmaskclip contributors. All rights reserved.
from .base_proposer import BaseProposer, MaskProposals
from .detector_proposer import DetectorProposer, ProposerWeightsNotFoundError
from .gt_proposer import GTMaskProposer

__all__ = [
    'BaseProposer', 'MaskProposals', 'DetectorProposer', 'GTMaskProposer',
    'ProposerWeightsNotFoundError'
]
