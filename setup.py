# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Packaging of mmmaskclip.

Like mmdet, configs, tools and ``model-index.yml`` are placed inside the
package's ``.mim`` folder (symlinks for editable installs, copies for
wheels) so that ``mim train/test/run mmmaskclip ...`` finds them.
"""
import os
import os.path as osp
import shutil
import sys
import warnings
from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))
MIM_FILES = ['tools', 'configs', 'demo', 'model-index.yml']


def readme() -> str:
    with open(osp.join(HERE, 'README.md'), encoding='utf-8') as f:
        return f.read()


def get_version() -> str:
    scope = {}
    with open(osp.join(HERE, 'mmmaskclip', 'version.py'), encoding='utf-8') as f:
        exec(compile(f.read(), 'version.py', 'exec'), scope)
    return scope['__version__']


def parse_requirements(name: str) -> list:
    """Requirement lines of ``requirements/<name>.txt`` (no comments/includes)."""
    lines = []
    with open(osp.join(HERE, 'requirements', f'{name}.txt'), encoding='utf-8') as f:
        for line in f:
            line = line.split('#')[0].strip()
            if line and not line.startswith('-'):
                lines.append(line)
    return lines


def add_mim_extension() -> None:
    """Link (editable install) or copy (wheel/sdist) MIM_FILES to mmmaskclip/.mim."""
    argv = ' '.join(sys.argv)
    if 'develop' in argv or 'editable' in argv:
        mode = 'symlink'
    elif any(cmd in argv for cmd in ('sdist', 'bdist_wheel', 'install', 'build')):
        mode = 'copy'
    else:
        return
    mim_path = osp.join(HERE, 'mmmaskclip', '.mim')
    os.makedirs(mim_path, exist_ok=True)
    for name in MIM_FILES:
        src, dst = osp.join(HERE, name), osp.join(mim_path, name)
        if not osp.exists(src):
            continue
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if mode == 'symlink':
            try:
                os.symlink(osp.relpath(src, mim_path), dst)
                continue
            except OSError:
                warnings.warn(f'Could not symlink {src}; copying it instead.')
        if osp.isdir(src):
            shutil.copytree(src, dst)
        else:
            shutil.copyfile(src, dst)


if __name__ == '__main__':
    add_mim_extension()
    setup(
        name='mmmaskclip',
        version=get_version(),
        description='MaskCLIP: open-vocabulary universal image segmentation, '
        'an OpenMMLab plugin',
        long_description=readme(),
        long_description_content_type='text/markdown',
        license='Apache-2.0',
        keywords='open-vocabulary, segmentation, CLIP, panoptic, OpenMMLab',
        packages=find_packages(include=['mmmaskclip', 'mmmaskclip.*']),
        include_package_data=True,
        package_data={'mmmaskclip': ['.mim/**/*', '.mim/*', 'datasets/class_lists/*']},
        python_requires='>=3.8',
        install_requires=parse_requirements('runtime'),
        extras_require=dict(
            tests=parse_requirements('tests'),
            optional=parse_requirements('optional'),
            demo=parse_requirements('demo'),
            mim=parse_requirements('mminstall')),
        classifiers=[
            'Programming Language :: Python :: 3',
            'Topic :: Scientific/Engineering :: Artificial Intelligence',
        ],
        zip_safe=False)
