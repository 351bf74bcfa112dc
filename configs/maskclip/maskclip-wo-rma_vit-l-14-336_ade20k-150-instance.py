# MaskCLIP w/o RMA on ADE20K-150 instance (Table 4: AP, AP50, AP75).
#   python tools/test.py ${THIS_CONFIG} none   (training-free)
_base_ = [
    '../_base_/models/maskclip-wo-rma_vit-l-14-336.py',
    '../_base_/datasets/ade20k_instance_maskclip.py'
]

model = dict(post_processor={{_base_.post_processor}})
