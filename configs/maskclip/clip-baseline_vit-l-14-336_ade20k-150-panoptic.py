# CLIP baseline (Appendix A) on ADE20K-150 panoptic (Table 3: PQ, SQ, RQ (things / stuff)).
#   python tools/test.py ${THIS_CONFIG} none   (training-free)
_base_ = [
    '../_base_/models/clip-baseline_vit-l-14-336.py',
    '../_base_/datasets/ade20k_panoptic_maskclip.py'
]

model = dict(post_processor={{_base_.post_processor}})
