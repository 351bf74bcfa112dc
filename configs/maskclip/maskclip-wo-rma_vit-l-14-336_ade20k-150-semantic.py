# MaskCLIP w/o RMA on ADE20K-150 semantic (Table 2: A-150 mIoU).
#   python tools/test.py ${THIS_CONFIG} none   (training-free)
_base_ = [
    '../_base_/models/maskclip-wo-rma_vit-l-14-336.py',
    '../_base_/datasets/ade20k_semantic_maskclip.py'
]

model = dict(post_processor={{_base_.post_processor}})
