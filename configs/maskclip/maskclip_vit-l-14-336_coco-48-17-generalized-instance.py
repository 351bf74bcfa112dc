# MaskCLIP (trained on COCO panoptic) on coco-48-17-generalized-instance (Table 5: generalized
#   base / target / all AP50).
#   python tools/test.py ${THIS_CONFIG} \
#       work_dirs/maskclip_vit-l-14-336_8xb1-10k_coco-panoptic/iter_10000.pth
_base_ = [
    '../_base_/models/maskclip_vit-l-14-336.py', '../_base_/datasets/coco-ovd_instance_maskclip.py'
]

model = dict(post_processor={{_base_.post_processor}})
