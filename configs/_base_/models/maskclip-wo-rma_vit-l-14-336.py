# MaskCLIP w/o RMA (paper Tables 2-4): mask class tokens with the attention
# mask of Eq. 1-2 only; training-free (tools/test.py CONFIG none).
_base_ = ['./maskclip_vit-l-14-336.py']
model = dict(visual_encoder=dict(mask_attention_overrides=None), head=None)
