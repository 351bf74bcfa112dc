# The paper's schedule (§4.2): AdamW lr 1e-4, weight decay 0.05 (0 on norms),
# 10k iterations, constant lr, the authors' gradient clipping (0.01, full
# model), only trainable (RMA) parameters in the optimizer.
optim_wrapper = dict(
    type='OptimWrapper',
    constructor='TrainableParamsOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05, eps=1e-8, betas=(0.9, 0.999)),
    paramwise_cfg=dict(norm_decay_mult=0.0),
    clip_grad=dict(max_norm=0.01, norm_type=2))
max_iters = 10000
param_scheduler = dict(type='ConstantLR', factor=1.0, by_epoch=False, begin=0, end=max_iters)
# (the ValLoop / TestLoop come with the dataset base's val/test dataloader)
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
auto_scale_lr = dict(enable=False, base_batch_size=8)
# Checkpoints store the message hub as plain data: they load with torch's
# weights_only=True and no allow-list (README, "Checkpoints under torch >= 2.6"),
# and carry the RNG states, so --resume continues exactly where a run stopped.
# A config that sets its own custom_hooks should keep these entries.
custom_hooks = [dict(type='PlainCheckpointHook'), dict(type='RNGStateCheckpointHook')]
