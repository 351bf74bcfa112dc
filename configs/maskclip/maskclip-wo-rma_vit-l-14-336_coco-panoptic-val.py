# MaskCLIP w/o RMA on COCO panoptic val: training-free
#   python tools/test.py ${THIS_CONFIG} none
_base_ = [
    '../_base_/models/maskclip-wo-rma_vit-l-14-336.py',
    '../_base_/datasets/coco_panoptic_maskclip.py'
]
# evaluation only: the dataset base's training split is not used
train_dataloader = None

model = dict(post_processor={{_base_.post_processor}})
