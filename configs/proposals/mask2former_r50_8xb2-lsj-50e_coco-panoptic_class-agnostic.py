# Class-agnostic Mask2Former R-50 mask proposer (MaskCLIP paper §3.1/§4.1):
# mmdet's Mask2Former R-50 COCO-panoptic recipe (LSJ, 368750 iterations,
# batch 16) "with the class supervision removed".
#
# Object / no-object head: every panoptic segment, thing or stuff, is one
# instance of the single class "object" (ClassAgnosticSegments), and the head
# has num_things_classes=1, num_stuff_classes=0. Its classifier is then the
# paper's "binary classification for either positive or negative": it gives
# each query an objectness, 1 - p(no-object), which DetectorProposer uses to
# rank proposals, and mmdet's Mask2FormerHead, Hungarian matcher and
# MaskFormerFusionHead are reused unchanged (removing the head would leave the
# matcher and the no-object loss without their class term and the proposals
# without a score).
#
# Evaluation: class-agnostic instance segmentation. The model predicts
# instances (panoptic_on=False, instance_on=True, top 100 queries) and
# mmdet's CocoMetric scores them against every COCO-panoptic val segment
# (things and stuff, crowds ignored) as one category "object": mask/box AP
# and AR@100 (proposal recall). Write that json once with
#   python tools/dataset_converters/coco_panoptic2agnostic.py \
#       data/coco/annotations/panoptic_val2017.json
# Train:
#   bash tools/dist_train.sh ${THIS_CONFIG} 8
_base_ = ['mmdet::mask2former/mask2former_r50_8xb2-lsj-50e_coco-panoptic.py']
custom_imports = dict(imports=['mmmaskclip'], allow_failed_imports=False)

num_things_classes = 1  # "object"
num_stuff_classes = 0
num_classes = num_things_classes + num_stuff_classes
model = dict(
    panoptic_head=dict(
        num_things_classes=num_things_classes,
        num_stuff_classes=num_stuff_classes,
        # object vs no-object, the no-object weight of the original recipe
        loss_cls=dict(class_weight=[1.0] * num_classes + [0.1])),
    panoptic_fusion_head=dict(
        num_things_classes=num_things_classes, num_stuff_classes=num_stuff_classes),
    test_cfg=dict(panoptic_on=False, semantic_on=False, instance_on=True))

# dataset settings
data_root = 'data/coco/'
backend_args = None
image_size = (1024, 1024)
train_pipeline = [
    dict(type='LoadImageFromFile', to_float32=True, backend_args=backend_args),
    dict(
        type='LoadPanopticAnnotations',
        with_bbox=True,
        with_mask=True,
        with_seg=True,
        backend_args=backend_args),
    # things + stuff -> instances of class 0; COCO crowd regions ignored;
    # gt_seg_map all 255 (the batch augment still pads it)
    dict(type='ClassAgnosticSegments', with_stuff=True, num_things_classes=80),
    dict(type='RandomFlip', prob=0.5),
    # large scale jittering
    dict(type='RandomResize', scale=image_size, ratio_range=(0.1, 2.0), keep_ratio=True),
    dict(
        type='RandomCrop',
        crop_size=image_size,
        crop_type='absolute',
        recompute_bbox=True,
        allow_negative_crop=True),
    # segments cropped away entirely (their masks are empty) are dropped, as
    # in mmdet's Mask2Former instance recipe: now they are all instances
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-5, 1e-5), by_mask=True),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', to_float32=True, backend_args=backend_args),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
train_dataloader = dict(
    dataset=dict(
        # stuff-only images are training images too
        filter_cfg=dict(filter_empty_gt=False, min_size=32),
        pipeline=train_pipeline))

agnostic_val_ann = 'annotations/panoptic_val2017_class-agnostic.json'
val_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='CocoDataset',
        data_root=data_root,
        ann_file=agnostic_val_ann,
        data_prefix=dict(img='val2017/'),
        metainfo=dict(classes=('object', )),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
test_dataloader = val_dataloader
val_evaluator = dict(
    _delete_=True,
    type='CocoMetric',
    ann_file=data_root + agnostic_val_ann,
    metric=['bbox', 'segm'],
    classwise=False,
    # AR@100: recall of the 100 proposals (max_per_image) per image
    metric_items=['mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l', 'AR@100'],
    backend_args=backend_args)
test_evaluator = val_evaluator
