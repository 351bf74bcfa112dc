# PASCAL Context 59 semantic segmentation (mIoU) for MaskCLIP. Data (VOC2010
# + PASCAL Context annotations):
# python tools/dataset_converters/pascal_context.py data/VOCdevkit --mat-dir trainval
# uint8 label maps, 0 = background (ignored after reduce_zero_label).
data_root = 'data/VOCdevkit/VOC2010/'
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    dict(
        type='LoadAnnotations',
        with_bbox=False,
        with_mask=False,
        with_seg=True,
        reduce_zero_label=True),
    dict(type='PackDetInputs', meta_keys=('img_path', 'ori_shape', 'img_shape', 'text')),
]
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='PascalContext59SegDataset',
        data_root=data_root,
        return_classes=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='GTIgnoreSemSegMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
# a test-only benchmark: the loops that go with the val/test dataloader and evaluator
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# post-processing of this benchmark (leaf configs: model = dict(post_processor=
#     <the base's post_processor>)): semantic only
post_processor = dict(panoptic_on=False, instance_on=False)
