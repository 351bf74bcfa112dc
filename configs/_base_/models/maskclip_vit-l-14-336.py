# MaskCLIP on a frozen CLIP ViT-L/14@336px with a frozen Mask2Former (R-50,
# mmdet's model zoo, used class-agnostically: only its 100 query masks) as the
# proposer. Weights: OpenAI CLIP (open_clip tag 'openai') and mmdet's
# Mask2Former; offline, give local files with
#   --cfg-options model.clip.pretrained=/path/open_clip_pytorch_model.bin \
#                 model.proposer.checkpoint=/path/mask2former.pth
# Our class-agnostic proposers (configs/proposals) plug in as
#   model.proposer.detector=configs/proposals/<config>.py
#   model.proposer.checkpoint=<its checkpoint>
_base_ = ['mmdet::_base_/default_runtime.py']
custom_imports = dict(imports=['mmmaskclip'], allow_failed_imports=False)

mask2former_checkpoint = ('https://download.openmmlab.com/mmdetection/v3.0/mask2former/'
                          'mask2former_r50_8xb2-lsj-50e_coco-panoptic/'
                          'mask2former_r50_8xb2-lsj-50e_coco-panoptic_20230118_125535-54df384a.pth')
# Relative Mask Attention in layers 6, 12, 18, 24 (1-based; Table 9 best).
rma = dict(type='RelativeMaskAttention', style='paper', impl='fast', chunk_memory=16)

model = dict(
    type='MaskCLIP',
    # Images stay RGB 0-255: CLIP and the proposer normalise for themselves.
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=None,
        std=None,
        bgr_to_rgb=True,
        pad_size_divisor=32,
        pad_mask=True,
        mask_pad_value=0,
        pad_seg=True,
        seg_pad_value=255),
    # OpenAI's CLIP uses QuickGELU: keep force_quick_gelu for local files too.
    clip=dict(name='ViT-L-14-336', pretrained='openai', force_quick_gelu=True),
    proposer=dict(
        type='DetectorProposer',
        detector='mmdet::mask2former/mask2former_r50_8xb2-lsj-50e_coco-panoptic.py',
        checkpoint=mask2former_checkpoint),
    visual_encoder=dict(
        type='MaskCLIPVisualEncoder', mask_attention_overrides={
            5: rma,
            11: rma,
            17: rma,
            23: rma
        }),
    # Raw class names, no prompt templates (the paper's setting).
    text_encoder=dict(type='MaskCLIPTextEncoder', templates=None),
    head=dict(type='MaskCLIPHead'),
    num_things_classes=80,
    void_class='other',
    logit_scale=100.0,
    # The authors squash the padded batch to CLIP's 336 x 336 (bicubic; we
    # antialias, their torchvision 0.11 did not: docs/reproduction.md), with
    # the pixel mean in the padding (0 after the proposer's normalisation).
    encoder_input_size=(336, 336),
    image_resize=dict(mode='bicubic', antialias=True),
    mask_antialias=True,
    image_pad_value=(123.675, 116.28, 103.53),
    # Mask2Former's inference rules; the authors' COCO thresholds. Each
    # dataset base holds its benchmark's settings in `post_processor` (ADE20K:
    # object_mask_thr=0.3; which outputs; LVIS: 300 per image), which the
    # benchmark configs apply: model = dict(post_processor=<the base's post_processor>).
    post_processor=dict(
        type='UniversalPostProcessor',
        panoptic_on=True,
        instance_on=True,
        semantic_on=True,
        object_mask_thr=0.5,
        overlap_thr=0.5,
        max_per_image=100,
        # Mask2Former's instance rule: top-100 over all classes, stuff dropped
        instance_topk='all'))
