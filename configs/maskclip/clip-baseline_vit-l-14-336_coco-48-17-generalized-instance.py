# CLIP baseline (Appendix A) on coco-48-17-generalized-instance (Table 5: generalized base /
#   target / all AP50).
#   python tools/test.py ${THIS_CONFIG} none   (training-free)
_base_ = [
    '../_base_/models/clip-baseline_vit-l-14-336.py',
    '../_base_/datasets/coco-ovd_instance_maskclip.py'
]

model = dict(post_processor={{_base_.post_processor}})
