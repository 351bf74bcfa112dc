# ADE20K-150 semantic segmentation (mIoU) for MaskCLIP: mmdet's
# ADE20KSegDataset on the standard annotations/validation maps (not the
# panoptic PNGs) and SemSegMetric, class names in every sample.
_base_ = ['mmdet::_base_/datasets/ade20k_semantic.py']

test_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='Resize', scale=(2560, 640), keep_ratio=True),
    dict(
        type='LoadAnnotations',
        with_bbox=False,
        with_mask=False,
        with_seg=True,
        reduce_zero_label=True),
    dict(type='PackDetInputs', meta_keys=('img_path', 'ori_shape', 'img_shape', 'text')),
]
val_dataloader = dict(num_workers=2, dataset=dict(return_classes=True, pipeline=test_pipeline))
test_dataloader = val_dataloader
# the ignore value declared by the ground truth (255 here, as mmdet's default)
val_evaluator = dict(type='GTIgnoreSemSegMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
# a test-only benchmark: the loops that go with the val/test dataloader and evaluator
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# post-processing of this benchmark (leaf configs: model = dict(post_processor=
#     <the base's post_processor>)): semantic only
post_processor = dict(panoptic_on=False, instance_on=False)
