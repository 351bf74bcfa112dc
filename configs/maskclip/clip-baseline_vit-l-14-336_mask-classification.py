# CLIP baseline (paper Appendix A, Algorithm 1): every proposal masks the
# image (black outside) and each masked image runs through CLIP on its own.
# Training-free; the slow reference of the paper's efficiency comparison.
_base_ = ['../_base_/models/maskclip_mask-classification_vit-l-14-336.py']

model = dict(
    region_encoder=dict(
        _delete_=True,
        type='CLIPBaselineEncoder',
        crop_to_box=False,
        background='black',
        chunk_size=16))
