# MaskCLIP (trained on COCO panoptic) on lvis-v1-instance (Table 4: LVIS AP).
#   python tools/test.py ${THIS_CONFIG} work_dirs/maskclip_vit-l-14-336_8xb1-10k_coco-panoptic/iter_10000.pth
_base_ = ['../_base_/models/maskclip_vit-l-14-336.py', '../_base_/datasets/lvis-v1_instance_maskclip.py']

# the LVIS API keeps the 300 best detections per image
model = dict(
    post_processor=dict(panoptic_on=False, semantic_on=False, max_per_image=300))
