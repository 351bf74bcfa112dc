# Copyright (c) mmmaskclip contributors. All rights reserved.
from .base_proposer import BaseProposer, MaskProposals
from .detector_proposer import DetectorProposer, ProposerWeightsNotFoundError
from .given_proposer import GivenMaskProposer
from .gt_proposer import GTMaskProposer
from .precomputed import PrecomputedProposer
from .sam_proposer import SAMProposer, SAMWeightsNotFoundError

__all__ = [
    'BaseProposer', 'MaskProposals', 'DetectorProposer', 'GivenMaskProposer', 'GTMaskProposer',
    'ProposerWeightsNotFoundError', 'PrecomputedProposer', 'SAMProposer', 'SAMWeightsNotFoundError'
]
