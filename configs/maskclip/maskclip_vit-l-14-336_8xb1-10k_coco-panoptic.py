# MaskCLIP (paper §4.2): train the Relative Mask Attention layers on COCO
# panoptic, CLIP and the proposer frozen. AdamW lr 1e-4, weight decay 0.05
# (0 on norms), 10k iterations, total batch 8 (8 GPUs x 1 image), gradient
# clipping 0.01 (the authors' full-model clip norm), constant lr.
#   bash tools/dist_train.sh ${THIS_CONFIG} 8 [--amp]
_base_ = [
    '../_base_/models/maskclip_vit-l-14-336.py', '../_base_/datasets/coco_panoptic_maskclip.py',
    '../_base_/schedules/maskclip_10k.py'
]

default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=2000, max_keep_ckpts=3))
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=False)
