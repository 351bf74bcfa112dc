# MaskCLIP w/o RMA (Tables 2-4): training-free; evaluate with tools/test.py
# (no checkpoint of its own: pass 'none').
_base_ = ['./maskclip_vit-l-14-336_8xb1-10k_coco-panoptic.py']

model = dict(visual_encoder=dict(mask_attention_overrides=None), head=None)
