# MaskCLIP w/o RMA on ade20k-847-semantic (Table 2: A-847 mIoU).
#   python tools/test.py ${THIS_CONFIG} none   (training-free)
_base_ = [
    '../_base_/models/maskclip-wo-rma_vit-l-14-336.py',
    '../_base_/datasets/ade20k-847_semantic_maskclip.py'
]

model = dict(post_processor={{_base_.post_processor}})
