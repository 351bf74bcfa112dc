# LVIS v1 val instance segmentation (AP, APr/APc/APf) for MaskCLIP: mmdet's
# LVIS layout (data/lvis_v1/annotations/lvis_v1_val.json, COCO 2017 images),
# class names turned into natural prompts ('bow (weapon)') for the text
# encoder only; LVISCompatMetric = mmdet's LVISMetric on NumPy >= 1.24.
data_root = 'data/lvis_v1/'
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
        type='LVISV1OVDataset',
        data_root=data_root,
        ann_file='annotations/lvis_v1_val.json',
        data_prefix=dict(img=''),
        return_classes=True,
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(
    type='LVISCompatMetric', metric=['segm'], ann_file=data_root + 'annotations/lvis_v1_val.json')
test_evaluator = val_evaluator
# a test-only benchmark: the loops that go with the val/test dataloader and evaluator
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# post-processing of this benchmark (leaf configs: model = dict(post_processor=
#     <the base's post_processor>)): instances only, the 300 best per image (the LVIS
# API keeps 300 detections)
post_processor = dict(panoptic_on=False, semantic_on=False, max_per_image=300)
