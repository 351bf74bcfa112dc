# CLIP baseline (paper Appendix A, Algorithm 1): each proposal masks the image
# (black outside) and every masked image runs through CLIP on its own;
# training-free (tools/test.py CONFIG none), the slow reference.
_base_ = ['./maskclip_vit-l-14-336.py']
model = dict(
    visual_encoder=dict(
        _delete_=True,
        type='CLIPBaselineEncoder',
        crop_to_box=False,
        background='black',
        chunk_size=16),
    head=None)
