# MaskCLIP w/o RMA on pascal-context-59-semantic (Table 2: P-59 mIoU).
#   python tools/test.py ${THIS_CONFIG} none   (training-free)
_base_ = [
    '../_base_/models/maskclip-wo-rma_vit-l-14-336.py',
    '../_base_/datasets/pascal-context-59_semantic_maskclip.py'
]

model = dict(post_processor={{_base_.post_processor}})
