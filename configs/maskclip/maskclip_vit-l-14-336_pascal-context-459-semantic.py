# MaskCLIP (trained on COCO panoptic) on pascal-context-459-semantic (Table 2: P-459 mIoU).
#   python tools/test.py ${THIS_CONFIG} \
#       work_dirs/maskclip_vit-l-14-336_8xb1-10k_coco-panoptic/iter_10000.pth
_base_ = [
    '../_base_/models/maskclip_vit-l-14-336.py',
    '../_base_/datasets/pascal-context-459_semantic_maskclip.py'
]

model = dict(post_processor={{_base_.post_processor}})
