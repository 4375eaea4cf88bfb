"""How every tool and benchmark reports bad input: one ``error: ...`` line and exit status 2.

Bad input (a missing file, a malformed annotation file, a checkpoint of another architecture, an
unknown module type in a config) is reported as one line on stderr naming the problem and the fix,
instead of a traceback from deep inside mmengine, pycocotools or torch. Set
``IRESNET_MMDET_DEBUG=1`` to get the full traceback instead.

This module imports only the standard library (``tools/deployment/onnx_infer.py`` loads it by its
path, without torch or mmdet), and nothing of the package: every other module may raise
:class:`ToolError`.
"""
import json
import math
import os
import pickle
import re
import sys

DEBUG_ENV = 'IRESNET_MMDET_DEBUG'
EXIT_BAD_INPUT = 2
_REGISTRY_MISS = re.compile(r'(\S+) is not in the (\S+) registry')


class ToolError(Exception):
    """Bad input to a tool, with a message that names the problem and the fix."""


def check_range(option, value, low=None, high=None):
    """A numeric command-line option must be finite and within ``[low, high]``.

    Args:
        option (str): The option as the user wrote it (``'--batch'``).
        value (int or float or None): Its value; None (not given) passes.
        low (float, optional): The smallest value allowed.
        high (float, optional): The largest value allowed.

    Raises:
        ToolError: e.g. ``"--batch 0: give 1 or more"``.
    """
    if value is None:
        return
    if (math.isfinite(value) and (low is None or value >= low)
            and (high is None or value <= high)):
        return
    if low is not None and high is not None:
        wanted = f'a number in [{low:g}, {high:g}]'
    else:
        wanted = f'{low:g} or more' if low is not None else f'{high:g} or less'
    raise ToolError(f'{option} {value:g}: give {wanted}')


def launcher_rank():
    """This process's global rank from the launcher's environment (0 without one)."""
    for name in ('RANK', 'SLURM_PROCID', 'OMPI_COMM_WORLD_RANK'):
        if name in os.environ:
            return int(os.environ[name])
    return 0


def run_main(main, bad_input=()):
    """Run a tool's ``main()``; turn bad-input exceptions into one error line and exit status 2.

    Only the process of rank 0 prints the line, so N processes of one run print it once.

    Args:
        main (callable): The tool's main function; its return value is the exit status.
        bad_input (tuple[type]): Further exception types whose message is the error line (for a
            tool whose own modules cannot derive from :class:`ToolError`).
    """
    try:
        status = main()
    except Exception as exc:  # noqa: BLE001  (mapped below, unknown ones re-raised)
        message = describe_error(exc, bad_input)
        if message is None or os.environ.get(DEBUG_ENV):
            raise
        if launcher_rank() == 0:
            print(f'error: {message}', file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    sys.exit(status or 0)


def describe_error(exc, bad_input=()):
    """The one-line message for a known kind of bad input, or None for anything else.

    Args:
        exc (BaseException): The exception that ended the tool.
        bad_input (tuple[type]): Further exception types whose message is the error line.

    Returns:
        str or None: The message.
    """
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    text = ' '.join(text.split())
    if isinstance(exc, (ToolError, ) + tuple(bad_input)):
        return text
    match = _REGISTRY_MISS.search(text)
    if isinstance(exc, KeyError) and match:
        return unknown_type_message(match.group(1).strip('`\'"'), match.group(2))
    if isinstance(exc, json.JSONDecodeError):
        return f'an annotation file is not valid JSON ({text}); check the ann_file of the config'
    if isinstance(exc, pickle.UnpicklingError):  # raised inside mmengine's runner (resume)
        found = re.search(r'Unsupported global:? GLOBAL (\S+)', text)
        if found:
            return unsafe_checkpoint_message(found.group(1).rstrip('.,'))
        return f'a checkpoint cannot be read safely: {torch_load_reason(text)}'
    if isinstance(exc, FileNotFoundError):
        name = exc.filename or text
        return f'file not found: {name}'
    return None


def unknown_type_message(name, registry, where='the config'):
    """Message for a ``type`` that no registry knows.

    Args:
        name (str): The type.
        registry (str): The registry's name, e.g. ``'mmdet::model'``.
        where (str): The config key that holds it.

    Returns:
        str: The message, with the plugin's model types when the registry is a model registry.
    """
    hint = ''
    if 'model' in registry:
        plugin = sorted(_plugin_models())
        if plugin:
            hint = f' The plugin registers: {", ".join(plugin)}.'
    return (f"unknown type '{name}' in {where}: it is not in the {registry} registry. Check the "
            "spelling and that the config has custom_imports = dict(imports=['iresnet_mmdet'], "
            f'allow_failed_imports=False).{hint}')


def _plugin_models():
    try:
        from mmdet.registry import MODELS
    except ImportError:  # pragma: no cover
        return []
    return [name for name, cls in MODELS.module_dict.items()
            if cls.__module__.startswith('iresnet_mmdet')]


def unsafe_checkpoint_message(objects, path=None):
    """Message for a checkpoint that ``torch.load(weights_only=True)`` refuses to unpickle.

    Args:
        objects (str): The Python objects the file refers to (``'os.makedirs'``), or torch's
            reason when it names none.
        path (str, optional): The file.

    Returns:
        str: What the file refers to and what to do, never torch's advice to switch
        ``weights_only`` off (that would run whatever code the file carries).
    """
    return (f"refusing {path or 'the checkpoint'}: it refers to Python objects ({objects}) that "
            'safe loading (torch.load weights_only=True) refuses, because unpickling them could '
            'run code; nothing in it was executed. Use checkpoints of plain tensors (the '
            "authors' release, mmengine's, this project's); if you trust the file, re-save just "
            "its weights: torch.save({'state_dict': sd}, 'new.pth')")


def torch_load_reason(text):
    """The cause in the text of a ``torch.load`` error, without torch's advice.

    Args:
        text (str): The exception's text.

    Returns:
        str: e.g. ``'Unsupported operand 149'``.
    """
    text = re.sub(r'\x1b\[[0-9;]*m', '', ' '.join(text.split()))
    found = re.search(r'Unsupported operand \d+', text)
    if found:
        return found.group(0)
    found = re.search(r'WeightsUnpickler error: (.*?)(?: Check the documentation|$)', text)
    reason = found.group(1) if found else text.replace('Weights only load failed.', '')
    reason = reason.split('In PyTorch 2.6')[0].strip(' .')
    return reason[:200] or 'not a torch.save file'
