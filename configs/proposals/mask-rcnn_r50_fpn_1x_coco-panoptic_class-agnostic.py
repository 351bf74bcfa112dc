# Class-agnostic Mask R-CNN R-50-FPN mask proposer (MaskCLIP paper §3.1/§4.1,
# "R50-FPN-1x"): mmdet's 1x recipe (12 epochs, batch 16, SGD lr 0.02) trained
# on COCO panoptic "with the class supervision removed".
#
# Object / background head: every panoptic segment, thing or stuff, is one
# instance of the single class "object" (ClassAgnosticSegments); the box head
# classifies object vs background with one class-agnostic box regressor and
# the mask head predicts one class-agnostic mask. Its detection scores are the
# objectness that DetectorProposer uses to rank proposals, and mmdet's heads
# are reused unchanged.
#
# Evaluation: class-agnostic instance segmentation with mmdet's CocoMetric
# against every COCO-panoptic val segment (things and stuff, crowds ignored)
# as one category "object": mask/box AP and AR@100 (proposal recall). Write
# that json once with
#   python tools/dataset_converters/coco_panoptic2agnostic.py \
#       data/coco/annotations/panoptic_val2017.json
# Train:
#   bash tools/dist_train.sh ${THIS_CONFIG} 8
_base_ = ['mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py']
custom_imports = dict(imports=['mmmaskclip'], allow_failed_imports=False)

model = dict(
    roi_head=dict(
        bbox_head=dict(num_classes=1, reg_class_agnostic=True),
        mask_head=dict(num_classes=1, class_agnostic=True)))

# dataset settings
data_root = 'data/coco/'
backend_args = None
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(
        type='LoadPanopticAnnotations',
        with_bbox=True,
        with_mask=True,
        with_seg=True,
        backend_args=backend_args),
    # things + stuff -> instances of class 0; COCO crowd regions ignored;
    # the semantic map (stuff pixels) is not needed afterwards
    dict(type='ClassAgnosticSegments', with_stuff=True, num_things_classes=80, drop_seg_map=True),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='CocoPanopticDataset',
        data_root=data_root,
        ann_file='annotations/panoptic_train2017.json',
        data_prefix=dict(img='train2017/', seg='annotations/panoptic_train2017/'),
        # stuff-only images are training images too
        filter_cfg=dict(filter_empty_gt=False, min_size=32),
        pipeline=train_pipeline,
        backend_args=backend_args))

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
    # AR@100: recall of the 100 detections (rcnn.max_per_img) per image
    metric_items=['mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l', 'AR@100'],
    format_only=False,
    backend_args=backend_args)
test_evaluator = val_evaluator
