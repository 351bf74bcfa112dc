# The authors' MaskCLIP (their model_final.pth and mask_proposal_network.pth,
# converted) evaluated as they do: ADE20K-150 panoptic (PQ), instance (AP)
# and semantic (mIoU) from one forward over the 150 panoptic names + 'other'.
#   python tools/model_converters/maskclip_official_to_mmmaskclip.py \
#       model_final.pth checkpoints/maskclip_official
#   python tools/test.py ${THIS_CONFIG} \
#       checkpoints/maskclip_official/maskclip-official_vit-l-14-336_coco-panoptic_converted.pth
_base_ = [
    '../../_base_/models/maskclip-official_vit-l-14-336.py',
    '../../_base_/datasets/ade20k-150_all-tasks_maskclip.py'
]

# their names where mmdet's panoptic json spells them otherwise
val_dataloader = dict(dataset=dict(text_map=dict(window='window ', airplane='plane')))
test_dataloader = val_dataloader

model = dict(post_processor={{_base_.post_processor}})
