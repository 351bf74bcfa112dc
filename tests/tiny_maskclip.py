# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Runner configs of a tiny MaskCLIP on a synthetic COCO-panoptic dataset.

Not a test module: shared by the training and tools tests.
"""
import copy

import torch
from conftest import tiny_clip_cfg
from mmengine.config import Config

META_KEYS = ('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'flip',
             'flip_direction', 'text', 'stuff_text')
RMA = dict(type='RelativeMaskAttention', style='paper', chunk_size=4)

#: MaskCLIP's data preprocessor (RGB 0-255, padded to 32, masks and maps padded).
PREPROCESSOR = dict(
    type='DetDataPreprocessor',
    mean=None,
    std=None,
    bgr_to_rgb=True,
    pad_size_divisor=32,
    pad_mask=True,
    pad_seg=True,
    seg_pad_value=255)


def panoptic_dataset(data: dict, test: bool = False) -> dict:
    """A ``CocoPanopticDataset`` config of :func:`write_coco_panoptic` output."""
    return dict(
        type='CocoPanopticDataset',
        data_root=data['data_root'],
        ann_file=data['ann_file'],
        data_prefix=data['data_prefix'],
        return_classes=True,
        test_mode=test,
        metainfo=dict(
            classes=data['classes'],
            thing_classes=data['thing_classes'],
            stuff_classes=data['stuff_classes']),
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadPanopticAnnotations', with_bbox=True, with_mask=True, with_seg=True),
            dict(type='PackDetInputs', meta_keys=META_KEYS)
        ])


def tiny_maskclip_cfg(work_dir: str,
                      data: dict,
                      clip_path: str,
                      max_iters: int,
                      rma_blocks=(1, 2),
                      proposer=None,
                      evaluate: bool = False) -> Config:
    """A Runner config training/testing a tiny MaskCLIP (3-block CLIP)."""
    model = dict(
        type='MaskCLIP',
        data_preprocessor=copy.deepcopy(PREPROCESSOR),
        clip=dict(model_cfg=tiny_clip_cfg(), pretrained=clip_path),
        # dilated, blurred ground truth: refinement has something to learn
        proposer=proposer
        or dict(type='GTMaskProposer', blur_size=11, threshold=0.15, num_random=2),
        visual_encoder=dict(
            type='MaskCLIPVisualEncoder', mask_attention_overrides=dict.fromkeys(rma_blocks, RMA)),
        text_encoder=dict(type='MaskCLIPTextEncoder'),
        head=dict(type='MaskCLIPHead', train_cfg=dict(num_points=512)),
        num_things_classes=len(data['thing_classes']))
    cfg = dict(
        default_scope='mmdet',
        work_dir=work_dir,
        model=model,
        train_dataloader=dict(
            batch_size=2,
            num_workers=0,
            dataset=panoptic_dataset(data),
            sampler=dict(type='DefaultSampler', shuffle=True),
            collate_fn=dict(type='pseudo_collate')),
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=max_iters),
        optim_wrapper=dict(
            type='OptimWrapper',
            constructor='TrainableParamsOptimWrapperConstructor',
            optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05),
            paramwise_cfg=dict(norm_decay_mult=0.0)),
        param_scheduler=dict(type='ConstantLR', factor=1.0, by_epoch=False),
        default_hooks=dict(
            timer=dict(type='IterTimerHook'),
            logger=dict(type='LoggerHook', interval=5),
            param_scheduler=dict(type='ParamSchedulerHook'),
            checkpoint=dict(type='CheckpointHook', interval=20, by_epoch=False),
            sampler_seed=dict(type='DistSamplerSeedHook')),
        log_processor=dict(by_epoch=False, window_size=1),
        env_cfg=dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo')),
        randomness=dict(seed=0),
        launcher='none')
    if evaluate:
        cfg.update(
            test_dataloader=dict(
                batch_size=1,
                num_workers=0,
                dataset=panoptic_dataset(data, test=True),
                sampler=dict(type='DefaultSampler', shuffle=False)),
            test_evaluator=[
                dict(
                    type='CocoPanopticMetric',
                    ann_file=f"{data['data_root']}/{data['ann_file']}",
                    seg_prefix=f"{data['data_root']}/{data['data_prefix']['seg']}"),
                dict(type='SemSegMetric', iou_metrics=['mIoU'])
            ],
            test_cfg=dict(type='TestLoop'))
    return Config(cfg)


def shrink_mask2former(model, in_channels=(64, 128, 256, 512)) -> None:
    """Shrink an mmdet Mask2Former model config (ResNet-18, 32 channels, 8
    queries, one encoder layer) in place, for CPU tests with random weights."""
    model.backbone.update(depth=18, init_cfg=None)
    head = model.panoptic_head
    head.update(in_channels=list(in_channels), feat_channels=32, out_channels=32, num_queries=8)
    encoder = head.pixel_decoder.encoder
    encoder.num_layers = 1
    encoder.layer_cfg.self_attn_cfg.update(embed_dims=32, num_heads=4)
    encoder.layer_cfg.ffn_cfg.update(embed_dims=32, feedforward_channels=64)
    head.pixel_decoder.positional_encoding.num_feats = 16
    head.positional_encoding.num_feats = 16
    decoder = head.transformer_decoder
    decoder.num_layers = 3
    for attn in ('self_attn_cfg', 'cross_attn_cfg'):
        decoder.layer_cfg[attn].update(embed_dims=32, num_heads=4)
    decoder.layer_cfg.ffn_cfg.update(embed_dims=32, feedforward_channels=64)
    model.train_cfg.num_points = 256
    model.test_cfg.max_per_image = 8


def shrink_mask_rcnn(model, in_channels=(64, 128, 256, 512)) -> None:
    """Shrink an mmdet Mask R-CNN model config (ResNet-18, 32 channels) in
    place, for CPU tests with random weights."""
    model.backbone.update(depth=18, init_cfg=None)
    model.neck.update(in_channels=list(in_channels), out_channels=32)
    model.rpn_head.update(in_channels=32, feat_channels=32)
    roi = model.roi_head
    roi.bbox_roi_extractor.out_channels = roi.mask_roi_extractor.out_channels = 32
    roi.bbox_head.update(in_channels=32, fc_out_channels=64)
    roi.mask_head.update(in_channels=32, conv_out_channels=16, num_convs=1)
    model.train_cfg.rpn.sampler.num = 64
    model.train_cfg.rcnn.sampler.num = 32


def exact_classification(model, wrong=None):
    """Class logits from the ground truth; ``wrong=(img_id, k, label)`` gives
    segment ``k`` of that image another label."""
    encode = model.encode

    def oracle(batch_inputs, samples, vocabulary, gt=None):
        proposals, regions, cls = encode(batch_inputs, samples, vocabulary, gt)
        exact = torch.full_like(cls, -1e4)
        for b, seg in enumerate(model.gt_segments(samples)):
            labels = seg.labels.clone()
            if wrong is not None and samples[b].img_id == wrong[0]:
                labels[wrong[1]] = wrong[2]
            exact[b, torch.arange(len(labels)), labels] = 10.0
        return proposals, regions, exact

    model.encode = oracle


#: The shipped MaskCLIP w/o RMA config that the mask-classification tests
#: run with a tiny CLIP (see :func:`tiny_classifier_options`).
WO_RMA_CONFIG = 'configs/maskclip/maskclip-wo-rma_vit-l-14-336_coco-panoptic-val.py'


def tiny_classifier_options(tmp, clip) -> dict:
    """``cfg_options`` that swap ViT-L for ``clip`` (saved into ``tmp``, a
    ``pathlib.Path``) and squash the batch to its 64 x 64 input."""
    path = str(tmp / 'tiny_clip.pt')
    torch.save(clip.state_dict(), path)
    return {
        'model.clip': dict(_delete_=True, model_cfg=tiny_clip_cfg(), pretrained=path),
        'model.encoder_input_size': (64, 64)
    }


def write_tiny_classifier_config(tmp, clip, base: str = WO_RMA_CONFIG) -> str:
    """A config file in ``tmp``: the shipped ``base`` (relative to the
    repository) with ``clip`` as in :func:`tiny_classifier_options`, for the
    demos' ``--config``."""
    import os.path as osp

    from conftest import REPO
    options = tiny_classifier_options(tmp, clip)
    path = tmp / 'tiny_classifier.py'
    path.write_text(f"_base_ = ['{osp.join(REPO, base)}']\n"
                    f"model = dict(clip={options['model.clip']!r}, encoder_input_size=(64, 64))\n")
    return str(path)


def tiny_inference_config(tmp, permissive: bool = False) -> tuple:
    """Write a tiny MaskCLIP for inference into ``tmp`` (a ``pathlib.Path``):
    random CLIP, a random class-agnostic Mask2Former (the shipped proposer
    recipe, shrunk), one 64x80 synthetic COCO image.

    Args:
        tmp (Path): the folder.
        permissive (bool): no void class and no panoptic thresholds, so that
            a random model's proposals all count.

    Returns:
        tuple[str, str]: the config file and the image file.
    """
    import os
    import os.path as osp

    from conftest import REPO, make_tiny_clip
    from synthetic_coco import write_coco_panoptic
    data = write_coco_panoptic(str(tmp / 'coco'), num_images=1, image_size=(64, 80))
    clip_path = str(tmp / 'clip.pt')
    torch.save(make_tiny_clip().state_dict(), clip_path)
    detector = Config.fromfile(
        osp.join(REPO, 'configs', 'proposals',
                 'mask2former_r50_8xb2-lsj-50e_coco-panoptic_class-agnostic.py')).model
    shrink_mask2former(detector)
    cfg = tiny_maskclip_cfg(
        str(tmp / 'work'),
        data,
        clip_path,
        max_iters=1,
        proposer=dict(type='DetectorProposer', detector=detector),
        evaluate=True)
    cfg.test_dataloader.dataset.pipeline.insert(
        1, dict(type='Resize', scale=(96, 96), keep_ratio=True))
    cfg.visualizer = dict(type='DetLocalVisualizer', name='visualizer')
    if permissive:
        cfg.model.void_class = None
        cfg.model.post_processor = dict(
            type='UniversalPostProcessor', object_mask_thr=0.0, overlap_thr=0.0)
    path = str(tmp / 'tiny_maskclip.py')
    cfg.dump(path)
    return path, osp.join(data['img_dir'], sorted(os.listdir(data['img_dir']))[0])
