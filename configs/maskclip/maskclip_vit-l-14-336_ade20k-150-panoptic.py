# MaskCLIP (trained on COCO panoptic) on ADE20K-150 panoptic (Table 3: PQ, SQ, RQ (things / stuff)).
#   python tools/test.py ${THIS_CONFIG} \
#       work_dirs/maskclip_vit-l-14-336_8xb1-10k_coco-panoptic/iter_10000.pth
_base_ = [
    '../_base_/models/maskclip_vit-l-14-336.py', '../_base_/datasets/ade20k_panoptic_maskclip.py'
]

model = dict(post_processor={{_base_.post_processor}})
