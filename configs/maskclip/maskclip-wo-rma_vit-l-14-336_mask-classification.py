# MaskCLIP w/o RMA (paper Table 2-4): mask class tokens with the attention
# mask of Eq. 1-2 in a frozen CLIP ViT-L/14@336px. Training-free.
_base_ = ['../_base_/models/maskclip_mask-classification_vit-l-14-336.py']

model = dict(region_encoder=dict(type='MaskCLIPVisualEncoder'))
