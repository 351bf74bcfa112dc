# MaskCLIP's COCO-panoptic recipe under mmengine's FlexibleRunner with FSDP
# (FullyShardedDataParallel): the frozen CLIP towers and the proposer are
# sharded over the GPUs instead of copied to each. Model, data, schedule,
# optimizer and hooks are the recipe's
# (maskclip_vit-l-14-336_8xb1-10k_coco-panoptic.py).
#   bash tools/dist_train.sh ${THIS_CONFIG} 8 [--amp]
#
# When: only if the recipe's DDP run does not fit into GPU memory and --amp
# did not help. FSDP shards weights, not activations (most of the memory at
# 1024 x 1024), and each GPU still gathers one whole unit while it runs (the
# image encoder, ~1.26 GB in fp32): on 8 GPUs it saves ~0.4 of the ~1.9 GB of
# fp32 weights per GPU. Needs torch with CUDA and NCCL, one GPU per process.
#
# Checkpoints: one file, the trainable weights only, as the recipe writes
# them (tools/test.py takes them with the recipe's test configs); the
# optimizer state in it is FSDP's (keyed by parameter name). --resume and
# load_from take them: the frozen weights, not in the file, stay as built
# (MaskCLIP's load hook that fills them in, _fill_frozen_state, stands aside
# under FSDP, which loads non-strictly), and the strategy loads the optimizer
# state the way torch >= 2.1 wants it (mmengine's FSDPStrategy does not:
# "TypeError: unhashable type: 'dict'").
#
# Checked on the CPU only (gloo, 2 processes, a tiny MaskCLIP with this
# strategy and device_id='cpu'; tests/test_configs_flexible_runner.py):
# training through tools/dist_train.sh takes the same steps as the recipe's
# Runner in one process with the same total batch, gradient clipping included,
# and writes checkpoints that load with weights_only=True (tools/test.py ran
# one, by hand); --resume from iteration 2 of 3, with as many processes,
# ends with the uninterrupted run's weights, bit for bit (SGD momentum
# restored), and load_from starts a new run from a checkpoint's weights. Not
# checked: NCCL and GPUs, the real ViT-L / Mask2Former weights and data, --amp
# under FSDP, resuming AdamW's state or on another number of GPUs, the memory
# saved.
_base_ = './maskclip_vit-l-14-336_8xb1-10k_coco-panoptic.py'

# FSDP cannot shard 0-dim parameters: open_clip's option gives CLIP's unused
# logit_scale the shape (1,) (open_clip reshapes the pretrained value).
model = dict(clip=dict(nonscalar_logit_scale=True))

runner_type = 'FlexibleRunner'
strategy = dict(
    # mmengine's FSDPStrategy, with the optimizer state loading of --resume
    # fixed for torch >= 2.1 (mmmaskclip/engine/fsdp.py)
    type='mmmaskclip.engine.fsdp.ResumableFSDPStrategy',
    model_wrapper=dict(
        # FSDP units: the image encoder, the text encoder and the proposer,
        # each gathered whole while it runs. Not CLIP's ResidualAttentionBlocks
        # one by one: FSDP gathers a unit only while the unit's own forward
        # runs, and MaskCLIPVisualEncoder never calls its blocks; it uses their
        # parts (ln_1, attn.in_proj_weight, mlp) one at a time.
        auto_wrap_policy=dict(
            type='mmmaskclip.engine.fsdp.wrap_by_class_name',
            classes=['MaskCLIPVisualEncoder', 'MaskCLIPTextEncoder', 'BaseProposer']),
        # The image encoder's unit holds the frozen CLIP weights and the
        # trainable Relative Mask Attention layers. FSDP flattens a unit's
        # parameters into one flat parameter, which can mix frozen and
        # trainable ones only with use_orig_params=True; it also keeps the
        # parameters and their names, so the optimizer constructor (trainable
        # parameters only, no weight decay on norms) sees what it sees under
        # DDP. (mmengine's default too; set here because it is required.)
        use_orig_params=True),
    # Checkpoints as the Runner writes them: one file, gathered on rank 0,
    # trainable weights only. (mmengine's default, 'local', writes a folder
    # of per-rank shards that only FSDP on as many GPUs can read.)
    state_dict_cfg='full')
# optim_wrapper stays the recipe's: under FSDP its constructor
# (TrainableParamsOptimWrapperConstructor) clips by the norm of the whole
# gradient; mmengine's OptimWrapper alone would clip each GPU's shard by that
# shard's norm. --amp gives an AmpOptimWrapper, with FSDP's ShardedGradScaler.
