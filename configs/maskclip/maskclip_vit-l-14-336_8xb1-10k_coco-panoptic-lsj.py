# MaskCLIP's COCO-panoptic recipe with mmdet's large-scale jitter (scale
# 0.1-2.0, 1024 x 1024 crops, Mask2Former's COCO augmentation) instead of the
# authors' flip + 1024 x 1024 squash. Everything else as the recipe.
#   bash tools/dist_train.sh ${THIS_CONFIG} 8 [--amp]
_base_ = ['./maskclip_vit-l-14-336_8xb1-10k_coco-panoptic.py']

train_dataloader = dict(dataset=dict(pipeline={{_base_.lsj_train_pipeline}}))
