# Copyright (c) mmmaskclip contributors. All rights reserved.
"""The full pipeline on an image: proposer -> MaskCLIP -> pictures."""
import os.path as osp

import numpy as np
import pytest
import torch
from conftest import load_script
from mmengine.config import Config
from tiny_maskclip import tiny_inference_config

from mmmaskclip.apis import MaskCLIPInferencer

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


@pytest.fixture(scope='module')
def tiny_config(tmp_path_factory):
    """A tiny MaskCLIP (random CLIP, random class-agnostic Mask2Former)."""
    return tiny_inference_config(tmp_path_factory.mktemp('inferencer'))


def test_inferencer_segments_and_draws(tiny_config, tmp_path):
    """The inferencer's predictions for a vocabulary are MaskCLIP's on the
    same image read through the config's dataset (tools/test.py's path), and
    they are drawn at the original size."""
    from mmdet.registry import DATASETS
    from mmengine.dataset import pseudo_collate
    from PIL import Image
    config, image = tiny_config
    inferencer = MaskCLIPInferencer(config, device='cpu', show_progress=False)
    cfg = Config.fromfile(config)
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    texts, stuff = dataset.metainfo['thing_classes'], dataset.metainfo['stuff_classes']
    out = inferencer(
        image,
        texts=list(texts),
        stuff_texts=list(stuff),
        out_dir=str(tmp_path),
        return_datasamples=True)
    sample = out['predictions'][0]
    ref = inferencer.model.test_step(pseudo_collate([dataset[0]]))[0]
    assert sample.pred_panoptic_seg.sem_seg.shape[-2:] == (64, 80)  # the original size
    assert torch.equal(sample.pred_panoptic_seg.sem_seg, ref.pred_panoptic_seg.sem_seg)
    assert torch.equal(sample.pred_sem_seg.sem_seg, ref.pred_sem_seg.sem_seg)
    assert torch.equal(sample.pred_instances.labels, ref.pred_instances.labels)
    torch.testing.assert_close(sample.pred_instances.scores, ref.pred_instances.scores)
    picture = tmp_path / 'vis' / osp.basename(image)
    assert np.asarray(Image.open(picture)).shape[:2] == (64, 80)


def test_large_images_are_drawn_small(tiny_config, tmp_path):
    """Drawings shrink to ``max_drawing_side`` (aspect kept); predictions and
    saved masks keep the image's size; the three tasks sit side by side."""
    from PIL import Image
    config, image = tiny_config
    inferencer = MaskCLIPInferencer(config, device='cpu', show_progress=False, max_drawing_side=40)
    out = inferencer(
        image,
        texts=['house', 'tree'],
        stuff_texts=['sky'],
        tasks=('panoptic', 'semantic', 'instance'),
        out_dir=str(tmp_path),
        no_save_pred=False,
        return_vis=True)
    assert out['visualization'][0].shape == (32, 3 * 40, 3)
    stem = osp.splitext(osp.basename(image))[0]
    assert np.asarray(Image.open(tmp_path / 'vis' / osp.basename(image))).shape == (32, 120, 3)
    assert np.asarray(Image.open(tmp_path / 'preds' / f'{stem}_semantic.png')).shape == (64, 80)


def test_inferencer_rejects_bad_vocabularies(tiny_config):
    config, image = tiny_config
    inferencer = MaskCLIPInferencer(config, device='cpu', show_progress=False)
    with pytest.raises(ValueError, match='vocabulary is empty'):
        inferencer(image, texts=[])
    with pytest.raises(TypeError, match='must be strings'):
        inferencer(image, texts=['rabbit', 3])
    with pytest.raises(ValueError, match='empty class name'):
        inferencer(image, texts=['rabbit', ' '])
    with pytest.raises(ValueError, match='Unknown vocabulary'):
        inferencer(image, vocab='no-such-preset')


def label_sets(sample) -> tuple:
    """Labels in the semantic, panoptic and instance outputs of one sample."""
    from mmmaskclip.models.post_processing.universal import INSTANCE_OFFSET
    sem = set(sample.pred_sem_seg.sem_seg.unique().tolist())
    pan = set((sample.pred_panoptic_seg.sem_seg.unique() % INSTANCE_OFFSET).tolist())
    return sem, pan, set(sample.pred_instances.labels.tolist())


@pytest.mark.parametrize(
    'vocabulary',
    [
        dict(texts=['rabbit'], stuff_texts=['sky']),
        dict(texts='rabbit . sky'),  # mmdet's string form: two things
        dict(stuff_texts=['sky', 'grass']),  # stuff only: semantic segmentation
    ])
def test_two_class_vocabulary_gives_two_classes(tiny_config, vocabulary):
    config, image = tiny_config
    inferencer = MaskCLIPInferencer(config, device='cpu', show_progress=False)
    # no void class and no thresholds: a random model's proposals all count
    inferencer.model.void_class = None
    inferencer.model.post_processor.object_mask_thr = 0.0
    inferencer.model.post_processor.overlap_thr = 0.0
    sample = inferencer(image, return_datasamples=True, **vocabulary)['predictions'][0]
    names = inferencer.visualizer.dataset_meta['classes']
    assert len(names) == 2 and set(names) <= {'rabbit', 'sky', 'grass'}
    sem, pan, inst = label_sets(sample)
    assert sem and sem <= {0, 1}
    assert pan <= {0, 1, 2} and pan - {2}  # 2 = VOID, something is labelled
    things = len(vocabulary.get('texts') or
                 ()) if not isinstance(vocabulary.get('texts'), str) else 2
    assert inst <= set(range(things))  # stuff is never an instance
    assert len(inst) or not things or not len(sample.pred_instances)


def test_per_image_vocabularies_label_each_image(tiny_config):
    config, image = tiny_config
    inferencer = MaskCLIPInferencer(config, device='cpu', show_progress=False)
    out = inferencer([image, image],
                     texts=[['rabbit'], ['cat', 'dog', 'car']],
                     batch_size=1,
                     return_datasamples=True)
    assert len(out['predictions']) == 2
    assert inferencer.visualizer.dataset_meta['classes'] == ('cat', 'dog', 'car')  # the last
    assert label_sets(out['predictions'][0])[0] == {0}  # one class: every pixel is it
    with pytest.raises(ValueError, match='different vocabularies'):
        inferencer([image, image], texts=[['rabbit'], ['cat']], batch_size=2)


def test_through_mmdet_det_inferencer(tiny_config, tmp_path):
    """mmdet's own DetInferencer: its string and per-image forms, labels
    named by the vocabulary (not COCO's) in the drawing."""
    from mmdet.apis import DetInferencer
    config, image = tiny_config
    import mmmaskclip  # noqa: F401

    # random weights: a seed that gives segments (mmdet's own drawing fails
    # on an empty panoptic result, which MaskCLIPInferencer handles)
    torch.manual_seed(0)
    inferencer = DetInferencer(config, weights=None, device='cpu', show_progress=False)
    out = inferencer(image, texts='person', return_datasamples=True)
    assert inferencer.model.dataset_meta['classes'] == ('person', )  # not p, e, r, s, o, n
    assert inferencer.visualizer.dataset_meta['classes'] == ('person', )
    assert label_sets(out['predictions'][0])[0] == {0}
    out = inferencer([image, image],
                     texts=['person . car .', 'tree .'],
                     stuff_texts=['sky', 'sky'],
                     out_dir=str(tmp_path),
                     return_datasamples=True)
    assert inferencer.visualizer.dataset_meta['classes'] == ('tree', 'sky')
    assert (tmp_path / 'vis' / osp.basename(image)).is_file()


def test_ground_truth_proposer_is_refused_at_inference(tiny_config, tmp_path):
    config, image = tiny_config
    cfg = Config.fromfile(config)
    cfg.model.proposer = dict(type='GTMaskProposer')
    path = str(tmp_path / 'gt_proposer.py')
    cfg.dump(path)
    inferencer = MaskCLIPInferencer(path, device='cpu', show_progress=False)
    with pytest.raises(ValueError, match='GTMaskProposer needs ground-truth'):
        inferencer(image, texts=['rabbit'])


@pytest.mark.parametrize('task', ['panoptic', 'semantic', 'instance'])
def test_demo_cli(tiny_config, tmp_path, task):
    demo = load_script('tools/demo/demo.py')
    config, image = tiny_config
    assert demo.main([
        image, '--texts', 'rabbit', '--stuff-texts', 'sky', '--config', config, '--task', task,
        '--out-dir',
        str(tmp_path), '--device', 'cpu'
    ]) == 0
    assert (tmp_path / 'vis' / osp.basename(image)).exists()
    assert demo.main([image, '--config', config]) == 2  # no vocabulary


def test_demo_cli_vocabulary_file_and_void_pixels(tiny_config, tmp_path, capsys):
    demo = load_script('tools/demo/demo.py')
    config, image = tiny_config
    names = tmp_path / 'names.txt'
    names.write_text('rabbit\nsky: stuff\n')
    argv = [
        image, '--vocab',
        str(names), '--config', config, '--task', 'semantic', '--device', 'cpu', '--out-dir',
        str(tmp_path)
    ]
    assert demo.main(argv + ['--void-pixels']) == 0
    assert (tmp_path / 'vis' / osp.basename(image)).exists()
    assert demo.main([image, '--vocab', 'no-such-preset', '--config', config]) == 2
    assert 'Unknown vocabulary' in capsys.readouterr().err


def test_saved_predictions_round_trip(tiny_config, tmp_path):
    """``out_dir/preds``: RLE, panoptic PNG and semantic PNG decode (with
    pycocotools / panopticapi's id rule) to exactly the predictions."""
    import json

    import mmcv
    import pycocotools.mask as mask_utils
    config, image = tiny_config
    inferencer = MaskCLIPInferencer(config, device='cpu', show_progress=False)
    inferencer.model.void_class = None
    inferencer.model.post_processor.object_mask_thr = 0.0
    texts, stuff = ['rabbit', 'house'], ['sky']
    sample = inferencer(
        image, texts=texts, stuff_texts=stuff, return_datasamples=True)['predictions'][0]
    inferencer(image, texts=texts, stuff_texts=stuff, out_dir=str(tmp_path), no_save_pred=False)
    stem = osp.splitext(osp.basename(image))[0]
    saved = json.loads((tmp_path / 'preds' / f'{stem}.json').read_text())
    assert saved['classes'] == texts + stuff

    instances = sample.pred_instances
    assert len(saved['instances']) == len(instances) > 0
    for entry, mask, label in zip(saved['instances'], instances.masks, instances.labels):
        decoded = mask_utils.decode(entry['segmentation'])
        assert np.array_equal(decoded.astype(bool), mask.numpy())
        assert entry['name'] == saved['classes'][int(label)]

    rgb = mmcv.imread(str(tmp_path / 'preds' / saved['panoptic']['png']), channel_order='rgb')
    ids = rgb[..., 0].astype(np.int64) + 256 * rgb[..., 1] + 256**2 * rgb[..., 2]
    pan = sample.pred_panoptic_seg.sem_seg[0].numpy()
    expected = np.where(pan % 1000 == len(saved['classes']), 0, pan)
    assert np.array_equal(ids, expected)
    segments = saved['panoptic']['segments_info']
    assert sorted(s['id'] for s in segments) == sorted(set(np.unique(ids).tolist()) - {0})
    for seg in segments:
        assert seg['area'] == int((ids == seg['id']).sum())
        assert seg['isthing'] == (seg['category_id'] < len(texts))

    sem = mmcv.imread(str(tmp_path / 'preds' / saved['semantic']['png']), flag='unchanged')
    assert np.array_equal(sem, sample.pred_sem_seg.sem_seg[0].numpy())


def test_video_in_drawn_video_out(tiny_config, tmp_path):
    import cv2
    import mmcv
    config, image = tiny_config
    frames = [mmcv.imread(image)] * 5
    frames[2] = frames[2][:, ::-1].copy()  # one mirrored frame
    video = str(tmp_path / 'clip.mp4')
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*'mp4v'), 4, (80, 64))
    for frame in frames:
        writer.write(frame)
    writer.release()
    inferencer = MaskCLIPInferencer(config, device='cpu', show_progress=False)
    out = inferencer(
        video,
        texts=['rabbit'],
        stuff_texts=['sky'],
        batch_size=2,
        out_dir=str(tmp_path / 'out'),
        no_save_pred=False)
    assert len(out['predictions']) == 5 and out['predictions'][0]['classes'] == ['rabbit', 'sky']
    written = mmcv.VideoReader(out['video'])
    assert (written.frame_cnt, written.width, written.height, written.fps) == (5, 80, 64, 4)
    assert sorted(p.name for p in (tmp_path / 'out' / 'preds').glob('*.json')) == [
        f'clip_{i:06d}.json' for i in range(5)
    ]
    # each frame is segmented as the same (decoded) image alone would be
    decoded = list(mmcv.VideoReader(video))
    alone = inferencer(
        decoded, texts=['rabbit'], stuff_texts=['sky'], return_datasamples=True)['predictions']
    again = inferencer(
        video, texts=['rabbit'], stuff_texts=['sky'], return_datasamples=True)['predictions']
    for k in range(5):
        assert torch.equal(again[k].pred_sem_seg.sem_seg, alone[k].pred_sem_seg.sem_seg)
        assert torch.equal(again[k].pred_panoptic_seg.sem_seg, alone[k].pred_panoptic_seg.sem_seg)
    assert again[0].pred_sem_seg.sem_seg.shape[-2:] == (64, 80)


def test_demo_cli_side_by_side_folder_video_and_masks(tiny_config, tmp_path, capsys):
    import cv2
    import mmcv
    demo = load_script('tools/demo/demo.py')
    config, image = tiny_config
    folder = tmp_path / 'images'
    folder.mkdir()
    for name in ('a.png', 'b.png'):
        mmcv.imwrite(mmcv.imread(image), str(folder / name))
    common = ['--texts', 'rabbit', '--stuff-texts', 'sky', '--config', config, '--device', 'cpu']
    out = tmp_path / 'out'
    assert demo.main([str(folder), '--task', 'all', '--save-masks', '--out-dir',
                      str(out)] + common) == 0
    for name in ('a', 'b'):
        drawing = mmcv.imread(str(out / 'vis' / f'{name}.png'))
        assert drawing.shape[:2] == (64, 3 * 80)  # panoptic | semantic | instance
        assert (out / 'preds' / f'{name}.json').is_file()
        assert (out / 'preds' / f'{name}_panoptic.png').is_file()
    video = str(tmp_path / 'clip.mp4')
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*'mp4v'), 2, (80, 64))
    for _ in range(3):
        writer.write(mmcv.imread(image))
    writer.release()
    assert demo.main([video, '--task', 'all', '--batch-size', '2', '--out-dir',
                      str(out)] + common) == 0
    written = mmcv.VideoReader(str(out / 'vis' / 'clip.mp4'))
    assert (written.frame_cnt, written.width, written.height) == (3, 3 * 80, 64)
    assert 'segmented 3 image(s) for 2 classes' in capsys.readouterr().out
    assert demo.main([str(tmp_path / 'missing.png')] + common) == 2


def test_dtype_runs_the_model_under_autocast(tiny_config):
    config, image = tiny_config
    with pytest.raises(ValueError, match='dtype must be one of'):
        MaskCLIPInferencer(config, device='cpu', dtype='int8')
    inferencer = MaskCLIPInferencer(config, device='cpu', show_progress=False, dtype='bfloat16')
    seen = []
    linear = next(m for m in inferencer.model.modules() if isinstance(m, torch.nn.Linear))
    handle = linear.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    try:
        sample = inferencer(
            image, texts=['rabbit'], stuff_texts=['sky'], return_datasamples=True)['predictions'][0]
    finally:
        handle.remove()
    assert seen and set(seen) == {torch.bfloat16}
    assert linear.weight.dtype == torch.float32
    assert sample.pred_sem_seg.sem_seg.shape[-2:] == (64, 80)


def test_demo_cli_prints_no_library_warnings(tiny_config, tmp_path):
    """A normal run prints the progress bar and one line, no warnings."""
    import subprocess
    import sys
    config, image = tiny_config
    proc = subprocess.run([
        sys.executable,
        osp.join(REPO, 'tools', 'demo', 'demo.py'), image, '--texts', 'rabbit', '--stuff-texts',
        'sky', '--config', config, '--device', 'cpu', '--out-dir',
        str(tmp_path), '--task', 'all'
    ],
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    output = proc.stdout + proc.stderr
    assert 'warn' not in output.lower(), output
    assert 'segmented 1 image(s) for 2 classes' in proc.stdout


def test_demo_cli_webcam_that_does_not_open(tiny_config, capsys):
    demo = load_script('tools/demo/demo.py')
    config, _ = tiny_config
    assert demo.main(['97', '--texts', 'rabbit', '--config', config, '--device', 'cpu']) == 2
    assert 'could not open camera 97' in capsys.readouterr().err


def test_inference_config_switches_tasks_without_a_post_processor_entry(tiny_config):
    """The tasks reach the model also when the config names no
    ``post_processor`` (mmengine's ``Config.setdefault`` returns a copy)."""
    from mmmaskclip.apis.inference_pipeline import inference_config
    cfg = Config.fromfile(tiny_config[0])
    cfg.model.pop('post_processor', None)
    path = tiny_config[0].replace('.py', '_no_post.py')
    cfg.dump(path)
    post = inference_config(path, tasks=('semantic', )).model.post_processor
    assert (post.semantic_on, post.panoptic_on, post.instance_on) == (True, False, False)
