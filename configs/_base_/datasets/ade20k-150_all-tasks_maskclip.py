# ADE20K-150 panoptic, instance and semantic segmentation from ONE forward
# over the 150 panoptic classes (the authors' evaluation): mmdet's panoptic
# dataset with the standard semantic maps loaded next to the panoptic ones,
# scored by CocoPanopticMetric (PQ), CocoMetric on the instance json (AP)
# and SemSegMetric on the standard semantic maps (mIoU), predictions mapped
# to each benchmark's own class order. Data (mmdet's layout):
#   data/ADEChallengeData2016/{images,annotations}/validation/,
#   ade20k_panoptic_val.json + ade20k_panoptic_val/ and ade20k_instance_val.json
#   (mmdet's tools/dataset_converters/ade20k2coco.py --task panoptic / instance;
#   docs/dataset_prepare.md).
_base_ = ['mmdet::_base_/datasets/ade20k_panoptic.py']

data_root = 'data/ADEChallengeData2016/'
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    # short side 640, long side at most 2560 (the authors' test size)
    dict(type='Resize', scale=(2560, 640), keep_ratio=True),
    dict(type='LoadPanopticAnnotations', with_seg=False, backend_args={{_base_.backend_args}}),
    # the standard semantic ground truth of the same image (relative to the
    # image folder images/validation/)
    dict(type='SetSegMapPath', seg_dir='../../annotations/validation'),
    dict(
        type='LoadAnnotations',
        with_bbox=False,
        with_label=False,
        with_mask=False,
        with_seg=True,
        reduce_zero_label=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'text',
                   'stuff_text')),
]
val_dataloader = dict(
    dataset=dict(
        type='ADE20KPanopticVocabDataset',
        data_root=data_root,
        return_classes=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = [
    dict(
        type='CocoPanopticMetric',
        ann_file=data_root + 'ade20k_panoptic_val.json',
        seg_prefix=data_root + 'ade20k_panoptic_val/',
        backend_args={{_base_.backend_args}}),
    dict(
        type='ReorderedCocoMetric',
        class_order='ade20k-150',
        metric=['segm'],
        ann_file=data_root + 'ade20k_instance_val.json'),
    dict(type='ReorderedSemSegMetric', class_order='ade20k-150', iou_metrics=['mIoU']),
]
test_evaluator = val_evaluator
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# post-processing of this benchmark (leaf configs: model = dict(post_processor=
#     <the base's post_processor>)): all three outputs from one forward, the authors'
# ADE20K thresholds
post_processor = dict(
    object_mask_thr=0.3,
    overlap_thr=0.5,
    panoptic_on=True,
    instance_on=True,
    semantic_on=True,
    max_per_image=100)
