# Copyright (c) mmmaskclip contributors. All rights reserved.
"""The optimizer sees trainable parameters only, with paramwise settings."""
import pytest
import torch.nn as nn

from mmmaskclip.engine import TrainableParamsOptimWrapperConstructor


def model():
    net = nn.Module()
    net.frozen = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    net.trainable = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    for p in net.frozen.parameters():
        p.requires_grad_(False)
    return net


@pytest.mark.parametrize('paramwise', [None, dict(norm_decay_mult=0.0)])
def test_only_trainable_parameters(paramwise):
    net = model()
    cfg = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05))
    wrapper = TrainableParamsOptimWrapperConstructor(cfg, paramwise)(net)
    groups = wrapper.optimizer.param_groups
    got = {id(p) for g in groups for p in g['params']}
    assert got == {id(p) for p in net.trainable.parameters()}
    if paramwise:
        decay = {id(p): g['weight_decay'] for g in groups for p in g['params']}
        assert decay[id(net.trainable[1].weight)] == 0.0  # LayerNorm (official phi_Qm)
        assert decay[id(net.trainable[0].weight)] == 0.05


def test_nothing_to_train_is_a_clear_error():
    net = model()
    for p in net.parameters():
        p.requires_grad_(False)
    cfg = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-4))
    with pytest.raises(ValueError, match='no trainable parameters'):
        TrainableParamsOptimWrapperConstructor(cfg)(net)
