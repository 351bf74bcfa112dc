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

model = dict(
    # the authors' ADE20K thresholds; all three outputs on
    post_processor=dict(object_mask_thr=0.3, overlap_thr=0.5, panoptic_on=True,
                        instance_on=True, semantic_on=True, max_per_image=100))
# their names where mmdet's panoptic json spells them otherwise
val_dataloader = dict(dataset=dict(text_map=dict(window='window ', airplane='plane')))
test_dataloader = val_dataloader
