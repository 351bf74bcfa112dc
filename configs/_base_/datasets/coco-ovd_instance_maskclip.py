# COCO 48/17 split (OVR-CNN / XPM) instance segmentation for MaskCLIP, from
# the standard instances_val2017.json: CocoOVDDataset keeps the images with
# annotations of the vocabulary; OVCocoMetric reports base / novel AP (XPM
# reports AP50: base_ap50, novel_ap50, and segm_mAP_50 for "All").
data_root = 'data/coco/'
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'text')),
]
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='CocoOVDDataset',
        setting='generalized',
        split='all',
        data_root=data_root,
        ann_file='annotations/instances_val2017.json',
        data_prefix=dict(img='val2017/'),
        return_classes=True,
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(
    type='OVCocoMetric', metric=['segm'], ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator
# a test-only benchmark: the loops that go with the val/test dataloader and evaluator
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# post-processing of this benchmark (leaf configs: model = dict(post_processor=
#     <the base's post_processor>)): instances only
post_processor = dict(panoptic_on=False, semantic_on=False)
