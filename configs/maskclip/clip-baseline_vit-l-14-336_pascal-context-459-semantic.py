# CLIP baseline (Appendix A) on pascal-context-459-semantic (Table 2: P-459 mIoU).
#   python tools/test.py ${THIS_CONFIG} none   (training-free)
_base_ = [
    '../_base_/models/clip-baseline_vit-l-14-336.py',
    '../_base_/datasets/pascal-context-459_semantic_maskclip.py'
]

model = dict(post_processor={{_base_.post_processor}})
