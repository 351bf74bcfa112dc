# CLIP baseline (Appendix A) on lvis-v1-instance (Table 4: LVIS AP).
#   python tools/test.py ${THIS_CONFIG} none   (training-free)
_base_ = [
    '../_base_/models/clip-baseline_vit-l-14-336.py',
    '../_base_/datasets/lvis-v1_instance_maskclip.py'
]

model = dict(post_processor={{_base_.post_processor}})
