# PASCAL Context 459 semantic segmentation (mIoU) for MaskCLIP: the PASCAL
# Context 59 setting with the full label set (same converter).
# uint16 label maps 0..458, 65535 = ignore (values above 255 are kept).
_base_ = ['./pascal-context-59_semantic_maskclip.py']

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    dict(
        type='LoadAnnotations',
        with_bbox=False,
        with_mask=False,
        with_seg=True,
        reduce_zero_label=False,
        ignore_index=65535),
    dict(type='PackDetInputs', meta_keys=('img_path', 'ori_shape', 'img_shape', 'text')),
]
val_dataloader = dict(dataset=dict(type='PascalContext459SegDataset', pipeline=test_pipeline))
test_dataloader = val_dataloader
