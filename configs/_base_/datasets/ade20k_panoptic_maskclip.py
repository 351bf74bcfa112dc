# ADE20K-150 panoptic (PQ, SQ, RQ; things/stuff) for MaskCLIP: mmdet's dataset
# and CocoPanopticMetric, class names carried in every sample. Test resize:
# short side 640, long side at most 2560 (the authors' setting).
_base_ = ['mmdet::_base_/datasets/ade20k_panoptic.py']

test_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='Resize', scale=(2560, 640), keep_ratio=True),
    dict(type='LoadPanopticAnnotations', backend_args={{_base_.backend_args}}),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'text',
                   'stuff_text')),
]
# text in label order (ADE20KPanopticVocabDataset: one mapping for labels and names)
val_dataloader = dict(
    dataset=dict(type='ADE20KPanopticVocabDataset', return_classes=True, pipeline=test_pipeline))
test_dataloader = val_dataloader
# a test-only benchmark: the loops that go with the val/test dataloader and evaluator
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# post-processing of this benchmark (leaf configs: model = dict(post_processor=
#     <the base's post_processor>)): the authors' ADE20K panoptic threshold, panoptic only
post_processor = dict(object_mask_thr=0.3, instance_on=False, semantic_on=False)
