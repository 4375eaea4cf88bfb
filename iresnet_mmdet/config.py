"""Find and read a config file: ``configs/...py`` or ``mmdet::<dir>/<name>.py``, one clear error."""
import os.path as osp

from .errors import ToolError


def config_file(name):
    """The file of a config path or ``package::<dir>/<name>.py`` name.

    Args:
        name (str): A path, or e.g. ``'mmdet::ssd/ssd300_coco.py'`` (a config installed with a
            package, in its ``.mim/configs``).

    Returns:
        str: The path of the file (not checked to exist).

    Raises:
        ToolError: For a ``package::`` name whose package is not installed.
    """
    if '::' not in name:
        return name
    package, path = name.split('::', 1)
    try:
        module = __import__(package)
    except ImportError:
        raise ToolError(f"config '{name}': package {package!r} is not installed") from None
    return osp.join(osp.dirname(module.__file__), '.mim', 'configs', path)


def load_config(name, cfg_options=None):
    """Read a config file and merge ``--cfg-options``.

    Args:
        name (str): Config file, or ``package::<dir>/<name>.py`` (see :func:`config_file`).
        cfg_options (dict, optional): Overrides from the command line.

    Returns:
        mmengine.Config: The config.

    Raises:
        ToolError: For a missing file, a syntax error or options that cannot be merged.
    """
    from mmengine.config import Config
    path = config_file(name)
    if not osp.isfile(path):
        raise ToolError(f"config file '{name}' does not exist")
    try:
        cfg = Config.fromfile(path)
    except SyntaxError as exc:
        raise ToolError(f"config file '{name}' has a syntax error: {exc}") from None
    if cfg_options:
        try:
            cfg.merge_from_dict(cfg_options)
        except TypeError as exc:  # e.g. a dict option over a None entry of the config
            raise ToolError(f'--cfg-options cannot be merged into the config: {exc}') from None
    return cfg
