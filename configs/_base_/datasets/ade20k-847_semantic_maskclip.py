# ADE20K-847 (ADE20K-full) semantic segmentation (mIoU) for MaskCLIP. Data:
# python tools/dataset_converters/ade20k_847.py ADE20K_2021_17_01 -o data/ade20k_full
# uint16 label maps 0..846, 65535 = ignore (values above 255 are kept).
data_root = 'data/ade20k_full/'
ignore = 65535
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2560, 640), keep_ratio=True),
    dict(
        type='LoadAnnotations',
        with_bbox=False,
        with_mask=False,
        with_seg=True,
        reduce_zero_label=False,
        ignore_index=ignore),
    dict(type='PackDetInputs', meta_keys=('img_path', 'ori_shape', 'img_shape', 'text')),
]
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='ADE20K847SegDataset',
        data_root=data_root,
        return_classes=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
# GTIgnoreSemSegMetric: the ground truth says which value to ignore (65535)
val_evaluator = dict(type='GTIgnoreSemSegMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
# a test-only benchmark: the loops that go with the val/test dataloader and evaluator
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# post-processing of this benchmark (leaf configs: model = dict(post_processor=
#     <the base's post_processor>)): semantic only
post_processor = dict(panoptic_on=False, instance_on=False)
