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
        raise ToolError(f"unknown config '{name}': package {package!r} is not installed") from None
    return osp.join(osp.dirname(module.__file__), '.mim', 'configs', path)


def load_config(name, cfg_options=None, require_model=True):
    """Read a config file and merge ``--cfg-options``.

    Args:
        name (str): Config file, or ``package::<dir>/<name>.py`` (see :func:`config_file`).
        cfg_options (dict, optional): Overrides from the command line.
        require_model (bool): Whether the config must define a ``model``.

    Returns:
        mmengine.Config: The config.

    Raises:
        ToolError: For a missing file, one that is not UTF-8 text, a syntax error, a config without
            a model, or options that cannot be merged or have the wrong type.
    """
    from mmengine.config import Config
    path = config_file(name)
    if not osp.isfile(path):
        raise ToolError(f"config file '{name}' does not exist")
    try:
        cfg = Config.fromfile(path)
    except SyntaxError as exc:
        raise ToolError(f"config file '{name}' has a syntax error: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ToolError(f"config file '{name}' (or a _base_ of it) is not UTF-8 text "
                        f'({exc.reason} at byte {exc.start}); give a Python config file') from None
    except ImportError as exc:  # custom_imports: mmengine's message lists sys.path
        cause = exc.__cause__ or exc
        raise ToolError(f"config file '{name}': custom_imports failed ({cause}); install the "
                        'module or put its folder on PYTHONPATH') from None
    except (NameError, KeyError, TypeError, ValueError, AttributeError) as exc:
        text = ' '.join(str(exc).split())
        raise ToolError(f"config file '{name}' cannot be loaded: {type(exc).__name__}: "
                        f'{text}') from None
    if require_model and not isinstance(cfg.get('model'), dict):
        raise ToolError(f"config file '{name}' defines no model: it needs model = dict(type=...) "
                        'or a _base_ config that has one (see configs/)')
    if cfg_options:
        check_option_types(cfg, cfg_options)
        try:
            cfg.merge_from_dict(cfg_options)
        except TypeError as exc:  # e.g. a dict option over a None entry of the config
            raise ToolError(f'--cfg-options cannot be merged into the config: {exc}') from None
    return cfg


def check_option_types(cfg, cfg_options):
    """A ``--cfg-options`` value must be a number where the config has a number (a bool where a
    bool): ``train_cfg.max_epochs=abc`` would only fail inside the run.

    Args:
        cfg (mmengine.Config): The config before the options are merged.
        cfg_options (dict): ``'dotted.key' -> value`` as parsed by mmengine's ``DictAction``.

    Raises:
        ToolError: Naming the option, what the config has and what to give.
    """
    for key, value in cfg_options.items():
        found, current = _lookup(cfg, key.split('.'))
        if not found or current is None:
            continue
        if isinstance(current, bool):
            wrong = not isinstance(value, bool)
            expected = 'True or False'
        elif isinstance(current, int):
            wrong = isinstance(value, bool) or not isinstance(value, int)
            expected = 'an integer'
        elif isinstance(current, float):
            wrong = isinstance(value, bool) or not isinstance(value, (int, float))
            expected = 'a number'
        else:
            continue
        if wrong:
            raise ToolError(f'--cfg-options {key}={value!r}: the config has {current!r} there; '
                            f'give {expected}')


def _lookup(node, parts):
    """``(found, value)`` of a dotted key (list items by index) in a config."""
    for part in parts:
        if hasattr(node, 'keys') and part in node.keys():  # a dict, ConfigDict or Config
            node = node[part]
        elif isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False, None
    return True, node
