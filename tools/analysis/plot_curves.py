"""Plot training loss and validation mAP against epoch for one or more work dirs, as a PNG.

Reads the ``scalars.json`` files mmengine writes (``WORK_DIR/<timestamp>/vis_data/scalars.json``,
one per run; the runs of a resumed training are merged, later runs winning for the same epoch).

Example (the paper's ResNet vs iResNet comparison)::

    .venv/bin/python tools/analysis/plot_curves.py work_dirs/ssd300_r50_8xb32-65e_coco \
        work_dirs/ssd300_iresnet50_8xb32-65e_coco --labels ResNet-50 iResNet-50 --out curves.png
"""
import argparse
import glob
import json
import os.path as osp
import sys
from collections import defaultdict

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))  # repo root

from iresnet_mmdet.atomic import check_output, write_output  # noqa: E402
from iresnet_mmdet.errors import ToolError, run_main  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Plot training loss and validation mAP against epoch from mmengine work dirs')
    parser.add_argument('work_dirs', nargs='+', help='one or more work dirs')
    parser.add_argument('--labels', nargs='+', help='legend labels (default: work dir names)')
    parser.add_argument('--loss-key', default='loss', help='training scalar to plot')
    parser.add_argument('--metric-key', default=None,
                        help='validation scalar to plot (default: the first key ending in '
                        "'bbox_mAP' or equal to 'coco/AP')")
    parser.add_argument('--out', default='curves.png', help='output PNG file')
    parser.add_argument('--title', default=None, help='figure title')
    args = parser.parse_args(argv)
    if args.labels and len(args.labels) != len(args.work_dirs):
        parser.error(f'--labels needs one label per work dir ({len(args.work_dirs)})')
    return args


def scalar_files(work_dir):
    """The ``scalars.json`` files of a work dir, oldest run first."""
    files = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    files += glob.glob(osp.join(work_dir, 'vis_data', 'scalars.json'))
    return sorted(files, key=lambda f: osp.basename(osp.dirname(osp.dirname(f))))


def read_records(path):
    records = []
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except ValueError:
                raise ToolError(f'{path}:{line_no} is not a JSON line') from None
    return records


def pick_metric_key(records):
    for rec in records:
        for key in rec:
            if key.endswith('bbox_mAP') or key == 'coco/AP':
                return key
    return None


def load_curves(work_dir, loss_key='loss', metric_key=None):
    """Mean training loss per epoch and validation metric per epoch of one work dir.

    Args:
        work_dir (str): An mmengine work dir.
        loss_key (str): Training scalar to average per epoch.
        metric_key (str, optional): Validation scalar; auto-detected when None.

    Returns:
        tuple: ``(loss, metric, metric_key)``, ``loss`` and ``metric`` as ``{epoch: value}``.
    """
    files = scalar_files(work_dir)
    if not files:
        raise ToolError(f"no '*/vis_data/scalars.json' in '{work_dir}'; is it a work dir of "
                        'tools/train.py?')
    loss, metric = {}, {}
    for path in files:  # later runs (after --resume) replace the epochs they repeat
        records = read_records(path)
        metric_key = metric_key or pick_metric_key(records)
        run_loss = defaultdict(list)
        for rec in records:
            if loss_key in rec and 'epoch' in rec:
                run_loss[int(rec['epoch'])].append(float(rec[loss_key]))
            elif metric_key and metric_key in rec and 'step' in rec:
                metric[int(rec['step'])] = float(rec[metric_key])
        loss.update({epoch: sum(v) / len(v) for epoch, v in run_loss.items()})
    return loss, metric, metric_key


def plot(curves, out, title=None):
    """Draw loss and metric panels and save them.

    Args:
        curves (list): ``(label, loss, metric, metric_key)`` per work dir.
        out (str): Image file (format from its extension, e.g. ``.png``), written atomically.
        title (str, optional): Figure title.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, (ax_loss, ax_map) = plt.subplots(1, 2, figsize=(11, 4))
    metric_names = set()
    for label, loss, metric, metric_key in curves:
        if loss:
            epochs = sorted(loss)
            ax_loss.plot(epochs, [loss[e] for e in epochs], marker='o', label=label)
        if metric:
            epochs = sorted(metric)
            ax_map.plot(epochs, [metric[e] for e in epochs], marker='o', label=label)
            metric_names.add(metric_key)
    ax_loss.set(xlabel='epoch', ylabel='training loss (epoch mean)', title='Training loss')
    ax_map.set(xlabel='epoch', ylabel=' / '.join(sorted(metric_names)) or 'mAP',
               title='Validation mAP')
    for ax in (ax_loss, ax_map):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:
        write_output(out, lambda tmp: fig.savefig(tmp, dpi=120), ToolError)
    finally:
        plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    check_output(args.out, '--out', ToolError)
    labels = args.labels or [osp.basename(osp.normpath(d)) for d in args.work_dirs]
    curves = []
    for label, work_dir in zip(labels, args.work_dirs):
        loss, metric, key = load_curves(work_dir, args.loss_key, args.metric_key)
        if not loss and not metric:
            raise ToolError(f"'{work_dir}' has no '{args.loss_key}' or validation scalars to "
                            'plot')
        curves.append((label, loss, metric, key))
        print(f'{label}: {len(loss)} epochs of {args.loss_key}, {len(metric)} of {key}')
    plot(curves, args.out, args.title)
    print(f'curves written to {args.out}')
    return 0


if __name__ == '__main__':
    run_main(main)
