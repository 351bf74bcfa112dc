# The MaskCLIP authors' class-agnostic mask proposal network, as mmdet's
# Mask2Former R-50, to load their released weights converted with
#   python tools/model_converters/maskclip_official_to_mmmaskclip.py \
#       model_final.pth checkpoints/   # or mask_proposal_network.pth
# -> checkpoints/mask2former_r50_maskclip-official_class-agnostic_converted.pth
# and use as a MaskCLIP proposer:
#   model.proposer.detector=configs/proposals/mask2former_r50_maskclip-official_class-agnostic.py
#   model.proposer.checkpoint=checkpoints/mask2former_r50_..._converted.pth
#
# Their proposer is detectron2's Mask2Former R-50 (FrozenBN ResNet with the
# stride in the 3x3 conv = mmdet style='pytorch'; MSDeformAttn pixel decoder,
# 6 encoder layers, 256 channels, GroupNorm; masked-attention decoder with 9
# layers, 100 queries, 8 heads, FFN 2048, post-norm), which is mmdet's
# Mask2Former R-50 architecture unchanged. They removed its class head: the
# checkpoint has no `panoptic_head.cls_embed`. mmdet's head still creates it
# (object / no-object, from the base config); it stays randomly initialised
# and MaskCLIP never reads it: DetectorProposer's objectness from it is
# meaningless, so keep MaskCLIP's `use_objectness=False` (the default; every
# score comes from CLIP, as in the authors' code). For the same reason this
# model's own instance predictions (test_cfg, CocoMetric below) are not
# meaningful; evaluate it through MaskCLIP.
_base_ = ['./mask2former_r50_8xb2-lsj-50e_coco-panoptic_class-agnostic.py']

model = dict(
    # every weight comes from the converted checkpoint: no ImageNet download
    backbone=dict(init_cfg=None))
