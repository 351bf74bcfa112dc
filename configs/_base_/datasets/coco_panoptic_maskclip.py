# COCO panoptic for MaskCLIP: mmdet's dataset, with the class names carried
# in every sample (return_classes=True; 'text' = things, 'stuff_text' = stuff).
_base_ = ['mmdet::_base_/datasets/coco_panoptic.py']

text_meta_keys = ('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'flip',
                  'flip_direction', 'text', 'stuff_text')
# The authors' augmentation: a horizontal flip, then every image squashed to
# 1024 x 1024 (their large-scale jitter is commented out).
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(
        type='LoadPanopticAnnotations',
        with_bbox=True,
        with_mask=True,
        with_seg=True,
        backend_args={{_base_.backend_args}}),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Resize', scale=(1024, 1024), keep_ratio=False),
    dict(type='PackDetInputs', meta_keys=text_meta_keys),
]
# mmdet's large-scale jitter (Mask2Former's COCO recipe) instead, an option:
# configs/maskclip/maskclip_vit-l-14-336_8xb1-10k_coco-panoptic-lsj.py
lsj_train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(
        type='LoadPanopticAnnotations',
        with_bbox=True,
        with_mask=True,
        with_seg=True,
        backend_args={{_base_.backend_args}}),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomResize', scale=(1024, 1024), ratio_range=(0.1, 2.0), keep_ratio=True),
    dict(
        type='RandomCrop',
        crop_size=(1024, 1024),
        crop_type='absolute',
        recompute_bbox=True,
        allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-5, 1e-5), by_mask=True),
    dict(type='PackDetInputs', meta_keys=text_meta_keys),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='LoadPanopticAnnotations', backend_args={{_base_.backend_args}}),
    dict(type='PackDetInputs', meta_keys=text_meta_keys),
]
# text in label order (CocoPanopticVocabDataset: one mapping for labels and names)
train_dataloader = dict(
    batch_size=1,
    num_workers=2,
    dataset=dict(type='CocoPanopticVocabDataset', return_classes=True, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    dataset=dict(type='CocoPanopticVocabDataset', return_classes=True, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# post-processing of this benchmark (leaf configs: model = dict(post_processor=
#     <the base's post_processor>)): all three outputs, the authors' COCO thresholds
post_processor = dict(object_mask_thr=0.5, overlap_thr=0.5)
