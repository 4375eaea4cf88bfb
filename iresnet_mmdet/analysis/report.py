"""Markdown tables of :func:`~iresnet_mmdet.analysis.complexity.complexity_rows`: the paper's
columns (params, GFLOPs in the paper counter, GMACs, the paper's figures) and the detector table."""
import os.path as osp
from typing import Optional, Sequence

_TASK_LABELS = dict(ssd300='SSD300', imagenet='ImageNet', cifar10='CIFAR-10', cifar100='CIFAR-100',
                    kinetics400='Kinetics-400', ssv2='SSv2', video='Video', cifar='CIFAR')


def _fmt_ref(value: Optional[float]) -> str:
    """A paper value as the paper prints it (a :class:`~iresnet_mmdet.paper.Figure`'s text)."""
    return '-' if value is None else str(value)


def markdown_table(rows: Sequence[dict]) -> str:
    """Format :func:`complexity_rows` output as a markdown table with the paper's columns.

    Args:
        rows (Sequence[dict]): Output of :func:`complexity_rows`.

    Returns:
        str: The table; "GFLOPs" is the paper's counter, "GMACs" conv+linear multiply-accumulates.
        With rows of a table printed in the ``paper-cifar`` convention (CIFAR), a column "GFLOPs
        (paper CIFAR counter)" follows the paper counter's, and "Paper: GFLOPs" of those rows is
        in that convention.
    """
    cifar = any(r.get('ref_convention') == 'paper-cifar' for r in rows)
    cifar_head = '| GFLOPs (paper CIFAR counter) ' if cifar else ''
    lines = [
        f'| Model | Input | Params (M) | GFLOPs (paper counter) {cifar_head}| GMACs (conv+linear) '
        '| Paper: Params (M) | Paper: GFLOPs | Config / arch |',
        '|---|---|---|---|---|---|---|---|' + ('---|' if cifar else ''),
    ]
    for r in rows:
        task = r.get('detector') if r['task'] == 'detector' else _TASK_LABELS.get(r['task'],
                                                                                    'Backbone')
        source = osp.basename(r['target']) if r['target'].endswith('.py') else r['target']
        cifar_cell = f"| {r['paper_cifar_flops'] / 1e9:.2f} " if cifar else ''
        lines.append(
            f"| {task} {r['name']} | {'x'.join(map(str, r['input_shape'][1:]))} "
            f"| {r['params'] / 1e6:.2f} | {r['paper_flops'] / 1e9:.2f} {cifar_cell}"
            f"| {r['macs'] / 1e9:.2f} | {_fmt_ref(r['ref_params_m'])} "
            f"| {_fmt_ref(r['ref_gflops'])} | `{source}` |")
    return '\n'.join(lines)


def _config_name(target: str) -> str:
    """How a table names a config: mmdet's as ``mmdet::<dir>/<file>``, others by file name."""
    return target if target.startswith('mmdet::') else osp.basename(target)


def detector_table(rows: Sequence[dict]) -> str:
    """Format :func:`complexity_rows` of detectors as a markdown table of params and GMACs.

    Args:
        rows (Sequence[dict]): Output of :func:`complexity_rows`.

    Returns:
        str: Columns Detector, Backbone (``+ DCN`` when it has deformable convs), Input (HxW),
        Params (M), GMACs (conv+linear) and Config.
    """
    lines = ['| Detector | Backbone | Input | Params (M) | GMACs (conv+linear) | Config |',
             '|---|---|---|---|---|---|']
    for r in rows:
        backbone = r['name'] + (' + DCN' if r['dcn'] else '')
        lines.append(
            f"| {r['detector'] or '-'} | {backbone} | {'x'.join(map(str, r['input_shape'][1:]))} "
            f"| {r['params'] / 1e6:.2f} | {r['macs'] / 1e9:.2f} | `{_config_name(r['target'])}` |")
    return '\n'.join(lines)
