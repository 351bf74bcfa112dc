# MaskCLIP (trained on COCO panoptic) on ADE20K-150 semantic (Table 2: A-150 mIoU).
#   python tools/test.py ${THIS_CONFIG} \
#       work_dirs/maskclip_vit-l-14-336_8xb1-10k_coco-panoptic/iter_10000.pth
_base_ = [
    '../_base_/models/maskclip_vit-l-14-336.py', '../_base_/datasets/ade20k_semantic_maskclip.py'
]

model = dict(post_processor={{_base_.post_processor}})
