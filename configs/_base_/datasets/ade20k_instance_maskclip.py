# ADE20K-150 instance segmentation (100 thing classes; AP, AP50, AP75) for
# MaskCLIP: mmdet's dataset and CocoMetric, class names in every sample.
_base_ = ['mmdet::_base_/datasets/ade20k_instance.py']

test_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='Resize', scale=(2560, 640), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'text')),
]
# text in label order (ADE20KInstanceVocabDataset: one mapping for labels and names)
val_dataloader = dict(
    dataset=dict(type='ADE20KInstanceVocabDataset', return_classes=True, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(metric=['segm'])
test_evaluator = val_evaluator
# a test-only benchmark: the loops that go with the val/test dataloader and evaluator
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# post-processing of this benchmark (leaf configs: model = dict(post_processor=
#     <the base's post_processor>)): instances only
post_processor = dict(panoptic_on=False, semantic_on=False)
