# MaskCLIP exactly as the authors evaluate it (mlpc-ucsd/MaskCLIP, their
# released model_final.pth converted by
# tools/model_converters/maskclip_official_to_mmmaskclip.py): official-style
# Relative Mask Attention in blocks 6/12/18/24, their proposer, and every
# setting of theirs where our defaults differ (docs/reproduction.md lists
# each difference and the option that selects it).
_base_ = ['./maskclip_vit-l-14-336.py']

rma = dict(type='RelativeMaskAttention', style='official', impl='fast', chunk_memory=16)
model = dict(
    # their class-agnostic Mask2Former R-50, converted (its class head is
    # unused: every score comes from CLIP)
    proposer=dict(
        type='DetectorProposer',
        detector='mmmaskclip::proposals/mask2former_r50_maskclip-official_class-agnostic.py',
        checkpoint='checkpoints/maskclip_official/'
        'mask2former_r50_maskclip-official_class-agnostic_converted.pth'),
    visual_encoder=dict(mask_attention_overrides={
        5: rma,
        11: rma,
        17: rma,
        23: rma
    }),
    # class names verbatim: ADE20K's comma-joined synonyms are one string
    text_encoder=dict(templates=None, split_synonyms=False),
    void_class='other',
    # the padded batch squashed to 336 x 336 with torchvision 0.11's tensor
    # Resize: bicubic, no antialiasing; proposals resized bilinearly, no
    # antialiasing, straight from the proposer's quarter resolution
    encoder_input_size=(336, 336),
    image_resize=dict(mode='bicubic', antialias=False),
    mask_antialias=False,
    # detectron2 pads with the pixel mean (ImageNet's)
    image_pad_value=(123.675, 116.28, 103.53),
    post_processor=dict(instance_topk='all'))
