# MaskCLIP (paper §4.2): train the Relative Mask Attention layers on COCO
# panoptic, CLIP and the proposer frozen. AdamW lr 1e-4, weight decay 0.05
# (0 on norms), 10k iterations, total batch 8 (8 GPUs x 1 image), gradient
# clipping 0.01 (the authors' full-model clip norm), constant lr.
#   bash tools/dist_train.sh ${THIS_CONFIG} 8 [--amp]
_base_ = ['../_base_/models/maskclip_vit-l-14-336_m2f-proposer.py']

text_meta_keys = ('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'flip',
                  'flip_direction', 'text', 'stuff_text')
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadPanopticAnnotations', with_bbox=True, with_mask=True, with_seg=True,
         backend_args={{_base_.backend_args}}),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomResize', scale=(1024, 1024), ratio_range=(0.1, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=(1024, 1024), crop_type='absolute',
         recompute_bbox=True, allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-5, 1e-5), by_mask=True),
    dict(type='PackDetInputs', meta_keys=text_meta_keys),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='LoadPanopticAnnotations', backend_args={{_base_.backend_args}}),
    dict(type='PackDetInputs', meta_keys=text_meta_keys),
]
train_dataloader = dict(
    batch_size=1,
    num_workers=2,
    dataset=dict(return_classes=True, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    dataset=dict(return_classes=True, pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='TrainableParamsOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05, eps=1e-8, betas=(0.9, 0.999)),
    paramwise_cfg=dict(norm_decay_mult=0.0),
    clip_grad=dict(max_norm=0.01, norm_type=2))

max_iters = 10000
param_scheduler = dict(_delete_=True, type='ConstantLR', factor=1.0, by_epoch=False,
                       begin=0, end=max_iters)
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=2000, max_keep_ckpts=3))
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=False)
auto_scale_lr = dict(enable=False, base_batch_size=8)
