# Training-free mask classification with a frozen CLIP ViT-L/14@336px.
# CLIP weights: the open_clip tag 'openai' (downloaded and cached by
# open_clip), or a local file: --cfg-options model.clip.pretrained=/path.pt
default_scope = 'mmdet'
custom_imports = dict(imports=['mmmaskclip'], allow_failed_imports=False)

model = dict(
    type='OpenVocabMaskClassifier',
    # OpenAI's CLIP uses QuickGELU: keep force_quick_gelu for local files too.
    clip=dict(name='ViT-L-14-336', pretrained='openai', force_quick_gelu=True),
    region_encoder=dict(type='MaskCLIPVisualEncoder'),
    # Class names as given, no prompt templates (the paper's setting).
    text_encoder=dict(type='MaskCLIPTextEncoder', templates=None),
    logit_scale=100.0,
    # The authors squash every image to CLIP's 336x336 input.
    input_size=(336, 336))
