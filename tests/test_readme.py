# Copyright (c) mmmaskclip contributors. All rights reserved.
"""The README's module table and layout match the code."""
import inspect
import os
import os.path as osp
import re

import mmmaskclip

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
PACKAGE = osp.dirname(mmmaskclip.__file__)


def readme() -> str:
    with open(osp.join(REPO, 'README.md'), encoding='utf-8') as f:
        return f.read()


def registered_classes() -> dict:
    """``{name: file}`` of every class mmmaskclip registers in a registry."""
    from mmdet import registry as det_registry
    from mmengine.registry import Registry
    found = {}
    for reg in vars(det_registry).values():
        if not isinstance(reg, Registry):
            continue
        for name, obj in reg.module_dict.items():
            if inspect.isclass(obj) and obj.__module__.startswith('mmmaskclip.'):
                found[name] = osp.relpath(inspect.getfile(obj), REPO)
    return found


def module_table() -> list:
    """``(names, files)`` of each row of the 'Modules' table."""
    text = readme().split('## Modules', 1)[1].split('\n## ', 1)[0]
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if len(cells) == 3 and cells[1].startswith('`mmmaskclip/'):
            rows.append((re.findall(r'`(\w+)`', cells[0]), re.findall(r'`([^`]+)`', cells[1])))
    return rows


def test_every_registered_class_is_in_the_module_table_at_its_file():
    rows = module_table()
    listed = {name: files for names, files in rows for name in names}
    for name, path in registered_classes().items():
        assert name in listed, f'{name} ({path}) is not in the README module table'
        assert any(path == f or (f.endswith('/') and path.startswith(f))
                   for f in listed[name]), (name, path, listed[name])


def test_module_table_and_layout_name_existing_paths():
    for _, files in module_table():
        for f in files:
            assert osp.exists(osp.join(REPO, f)), f
    layout = readme().split('## Layout', 1)[1].split('```')[1]
    actual = {d for d in os.listdir(PACKAGE) if osp.isfile(osp.join(PACKAGE, d, '__init__.py'))}
    actual |= {
        f'models.{d}'
        for d in os.listdir(osp.join(PACKAGE, 'models'))
        if osp.isfile(osp.join(PACKAGE, 'models', d, '__init__.py'))
    }
    top = set(re.findall(r'^  (\w+)/', layout, flags=re.M))  # mmmaskclip's subpackages
    sub = {f'models.{d}' for d in re.findall(r'^    (\w+)/', layout, flags=re.M)}  # models'
    assert top | sub == actual


# ------------------------------------------------ what a new user runs first
def code_blocks(language: str, text: str = None) -> list:
    """The code blocks of ``language`` (```` ```bash ```` ...) in the README."""
    return re.findall(rf'^ *```{language}\n(.*?)^ *```', text or readme(), flags=re.M | re.S)


def section(title: str) -> str:
    """The README from the heading ``title`` to the next heading of its level
    or above."""
    text = readme()
    start = re.search(rf'^(#+) {re.escape(title)}\n', text, flags=re.M)
    assert start, title
    level = len(start.group(1))
    rest = text[start.end():]
    end = re.search(rf'^#{{1,{level}}} ', rest, flags=re.M)
    return rest[:end.start()] if end else rest


#: The section that installs into an environment of the user's own, where
#: plain ``python``, ``pip`` and ``mim`` are that environment's.
OWN_ENVIRONMENT = 'Installing on your own GPU machine'


def test_one_interpreter_convention():
    """Commands run the project's environment as ``.venv/bin/python`` (pip,
    mim): the system's plain ``python`` has no mmengine. Only the section on
    an environment of the user's own writes plain names."""
    text = readme().replace(section(OWN_ENVIRONMENT), '')
    bare = re.compile(r'(?:^|&&|;|`)\s*(python3?|pip3?|mim|pre-commit) ', flags=re.M)
    for block in code_blocks('bash', text):
        for line in block.splitlines():
            assert not bare.search(line.split('#')[0]), line
    prose = re.sub(r'^ *```.*?^ *```', '', text, flags=re.M | re.S)
    assert not re.findall(r'`(?:python3?|pip3?|pre-commit) ', prose)
    assert not re.findall(r'`mim (?:run|train|test|download|install) ', prose)
    # the two set-up commands, and what CI runs verbatim
    setup = code_blocks('bash', section('Set-up (two commands)'))[0].splitlines()
    assert setup[0].startswith('bash tools/install.sh && .venv/bin/python tools/demo/')
    assert setup[1] == '.venv/bin/python -m pytest tests'
    with open(osp.join(REPO, '.ci', 'run'), encoding='utf-8') as f:
        assert setup[1] in f.read()


def offline_snippets() -> list:
    """The README's Python snippets for a machine without GPU or network."""
    snippets = [b for b in code_blocks('python') if "device='cpu'" in b]
    assert len(snippets) == 2, 'the offline snippets of mask classification and segmentation'
    return snippets


#: The shipped config of the offline snippets.
WO_RMA = 'configs/maskclip/maskclip-wo-rma_vit-l-14-336_coco-panoptic-val.py'


def tiny_config(tmp) -> str:
    """A config file in ``tmp`` (a ``pathlib.Path``): :data:`WO_RMA` with a
    tiny CLIP whose weights file does not exist and the try-out's shrunk
    Mask2Former (its checkpoint, the model zoo's URL, kept), so that the
    snippets' offline switch is what lets them run."""
    from conftest import load_script, tiny_clip_cfg
    tool = load_script('tools/misc/make_synthetic_dataset.py')
    detector = tmp / 'tiny_mask2former.py'
    detector.write_text(tool.TINY_MASK2FORMER)
    clip = dict(model_cfg=tiny_clip_cfg(), pretrained=str(tmp / 'no_such_clip_weights.bin'))
    path = tmp / 'tiny_wo_rma.py'
    path.write_text(f"_base_ = ['{osp.join(REPO, WO_RMA)}']\n"
                    f'model = dict(clip=dict(_delete_=True, **{clip!r}),\n'
                    f'             encoder_input_size=(64, 64),\n'
                    f"             proposer=dict(detector='{detector}'))\n")
    return str(path)


def test_offline_python_snippets_run(tmp_path, monkeypatch):
    """The offline snippets of 'Classify masks' and 'Segment images' run as
    written, on the CPU with no network, with a tiny CLIP and proposer
    swapped into their configs (``init_mask_classifier``'s default is
    passed explicitly)."""
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    for name in ('demo', 'configs'):
        (tmp_path / name).symlink_to(osp.join(REPO, name))
    monkeypatch.chdir(tmp_path)  # outputs/ goes here
    tiny = tiny_config(tmp_path)
    classify, segment = offline_snippets()
    assert "cfg_options={'model.clip.pretrained': None}" in classify
    assert 'random_weights=True' in segment and WO_RMA in segment
    classify = classify.replace('init_mask_classifier(device=',
                                f'init_mask_classifier({tiny!r}, device=')
    segment = segment.replace(WO_RMA, tiny)
    namespace = {}
    exec(compile(classify, 'README: classify masks offline', 'exec'), namespace)
    result = namespace['result']
    assert result.probs.shape == (7, 7)  # the scene's 7 masks, 7 names
    namespace = {}
    exec(compile(segment, 'README: segment images offline', 'exec'), namespace)
    sample = namespace['out']['predictions'][0]
    assert sample.pred_panoptic_seg.sem_seg.shape[-2:] == (240, 320)
    assert (tmp_path / 'outputs' / 'vis' / 'scene.png').is_file()
