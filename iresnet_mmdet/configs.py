"""The shipped configs (the repository's ``configs/``), also where only the package is installed.

A wheel of this package carries ``configs/`` as ``iresnet_mmdet/.mim/configs`` (where mmdet keeps
its own); a checkout or an editable install uses the repository's ``configs/``. mmengine resolves
``package::`` bases only for OpenMMLab's own packages, so a config of yours reaches ours by a path::

    python -m iresnet_mmdet.configs                        # the directory of the shipped configs
    python -m iresnet_mmdet.configs ssd300/ssd300_iresnet50_8xb32-65e_coco.py   # one config's path
    python -m iresnet_mmdet.configs --list                 # every shipped config
    python -m iresnet_mmdet.configs --copy configs/iresnet # a copy of the tree next to your configs

After ``--copy configs/iresnet``, a config in ``configs/`` inherits with
``_base_ = './iresnet/ssd300/ssd300_iresnet50_8xb32-65e_coco.py'``: the copy keeps the tree, so
the relative ``_base_`` paths inside it keep working (docs/install.md).
"""
import argparse
import os
import os.path as osp
import shutil
import sys
import tempfile

from .errors import ToolError, run_main

_PACKAGE_DIR = osp.dirname(osp.abspath(__file__))


def config_dir():
    """The directory of the shipped configs.

    Returns:
        str: ``iresnet_mmdet/.mim/configs`` of an installed wheel, else the repository's
        ``configs/``.

    Raises:
        ToolError: If neither exists (a broken install).
    """
    for candidate in (osp.join(_PACKAGE_DIR, '.mim', 'configs'),
                      osp.join(osp.dirname(_PACKAGE_DIR), 'configs')):
        if osp.isdir(osp.join(candidate, '_base_')):
            return candidate
    raise ToolError(f'no shipped configs next to {_PACKAGE_DIR}: reinstall iresnet-mmdet from '
                    'its wheel or use a checkout of the repository')


def list_configs():
    """Every shipped config, as paths relative to :func:`config_dir` (``_base_/`` files last)."""
    root = config_dir()
    names = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if d != '__pycache__')
        names += [osp.relpath(osp.join(folder, f), root) for f in sorted(files)
                  if f.endswith('.py')]
    return sorted(names, key=lambda name: (name.startswith('_base_'), name))


def config_path(name):
    """The file of one shipped config.

    Args:
        name (str): Its path relative to the configs directory, e.g.
            ``'ssd300/ssd300_iresnet50_8xb32-65e_coco.py'`` (a leading ``configs/`` is accepted).

    Returns:
        str: The absolute path of the file.

    Raises:
        ToolError: If there is no such config.
    """
    relative = name[len('configs/'):] if name.startswith('configs/') else name
    path = osp.join(config_dir(), relative)
    if not osp.isfile(path):
        raise ToolError(f"no shipped config '{name}'; 'python -m iresnet_mmdet.configs --list' "
                        'lists them')
    return path


def copy_configs(target):
    """Copy the shipped configs into a new directory ``target``.

    The tree is copied whole, so the relative ``_base_`` paths inside it still resolve. The copy
    is written next to ``target`` and renamed into place: nothing half-written is left behind.

    Args:
        target (str): A directory that does not exist yet or is empty.

    Returns:
        str: ``target``.

    Raises:
        ToolError: If ``target`` is a file or a directory that is not empty.
    """
    if osp.isfile(target) or (osp.isdir(target) and os.listdir(target)):
        raise ToolError(f"'{target}' already exists and is not an empty directory; give a new "
                        'directory to copy the configs into')
    parent = osp.dirname(osp.abspath(target))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix='.configs-', dir=parent)
    try:
        copy = osp.join(staging, 'configs')
        shutil.copytree(config_dir(), copy,
                        ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
        if osp.isdir(target):
            os.rmdir(target)
        os.rename(copy, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m iresnet_mmdet.configs',
        description="Find or copy iresnet-mmdet's shipped configs. Without arguments: print "
        'their directory.')
    parser.add_argument('config', nargs='?',
                        help='print the path of this config, e.g. '
                        'ssd300/ssd300_iresnet50_8xb32-65e_coco.py')
    parser.add_argument('--list', action='store_true', help='list the shipped configs')
    parser.add_argument('--copy', metavar='DIR',
                        help='copy the configs into DIR (new or empty) to inherit from or edit')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.copy:
        print(osp.abspath(copy_configs(args.copy)))
    elif args.list:
        print('\n'.join(list_configs()))
    elif args.config:
        print(config_path(args.config))
    else:
        print(config_dir())
    return 0


if __name__ == '__main__':
    run_main(lambda: main(sys.argv[1:]))
