# MaskCLIP (trained on COCO panoptic) on pascal-context-59-semantic (Table 2: P-59 mIoU).
#   python tools/test.py ${THIS_CONFIG} \
#       work_dirs/maskclip_vit-l-14-336_8xb1-10k_coco-panoptic/iter_10000.pth
_base_ = [
    '../_base_/models/maskclip_vit-l-14-336.py',
    '../_base_/datasets/pascal-context-59_semantic_maskclip.py'
]

model = dict(post_processor={{_base_.post_processor}})
