# MaskCLIP w/o RMA on coco-48-17-constrained-novel-instance (Table 5: constrained target AP50
#   (novel-only vocabulary)).
#   python tools/test.py ${THIS_CONFIG} none   (training-free)
_base_ = [
    '../_base_/models/maskclip-wo-rma_vit-l-14-336.py',
    '../_base_/datasets/coco-ovd_instance_maskclip.py'
]

val_dataloader = dict(dataset=dict(setting='constrained', split='novel'))
test_dataloader = val_dataloader

model = dict(post_processor={{_base_.post_processor}})
