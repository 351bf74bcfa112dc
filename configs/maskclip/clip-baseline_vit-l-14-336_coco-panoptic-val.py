# CLIP baseline (Appendix A) on COCO panoptic val (PQ; the training dataset's own classes).
#   python tools/test.py ${THIS_CONFIG} none   (training-free)
_base_ = [
    '../_base_/models/clip-baseline_vit-l-14-336.py', '../_base_/datasets/coco_panoptic_maskclip.py'
]
# evaluation only: the dataset base's training split is not used
train_dataloader = None

model = dict(post_processor={{_base_.post_processor}})
