"""``CocoTableMetric``: COCO box evaluation reporting the paper table's twelve figures."""
import json
import os.path as osp
import tempfile
from collections import OrderedDict
from typing import Dict, Optional, Sequence, Union

from mmengine.fileio import get_local_path, load
from mmengine.logging import MMLogger

from mmdet.evaluation.metrics import CocoMetric
from mmdet.registry import METRICS

from ..coco_figures import FIGURE_NAMES
from .coco_eval import (BACKENDS, MAX_DETS, CocoFormatError, evaluate_bbox, import_backend,
                        load_gt)


@METRICS.register_module()
class CocoTableMetric(CocoMetric):
    """COCO box AP/AR exactly as pycocotools' ``summarize()`` prints them (maxDets 1, 10, 100).

    MMDetection's ``CocoMetric`` logs six AP figures rounded to 3 decimals, and its AR figures use
    ``proposal_nums=(100, 300, 1000)``, so they are not COCO's AR@1/10/100. This metric reports
    all twelve standard figures, unrounded, under the keys (with the default prefix ``coco``)::

        coco/bbox_AP    coco/bbox_AP50  coco/bbox_AP75  coco/bbox_APs  coco/bbox_APm  coco/bbox_APl
        coco/bbox_AR1   coco/bbox_AR10  coco/bbox_AR100 coco/bbox_ARs  coco/bbox_ARm  coco/bbox_ARl

    plus ``coco/bbox_mAP`` (= ``bbox_AP``) so that MMDetection's convention
    ``save_best='coco/bbox_mAP'`` keeps working, and, with ``classwise=True``,
    ``coco/bbox_AP_<class name>``. Values are fractions in [0, 1]; -1 means "no ground truth in
    that range" as in pycocotools.

    Result collection across ranks, the ``img_id``/label to COCO id conversion and the
    ``outfile_prefix`` files are MMDetection's (this class subclasses ``CocoMetric``); the
    evaluation itself is :func:`iresnet_mmdet.evaluation.coco_eval.evaluate_bbox`. The evaluated
    images are the images that were tested (all of val2017 in a normal run).

    Args:
        ann_file (str, optional): COCO annotation file. It is validated when the metric is built,
            so a malformed file fails before any inference. If None, the ground truth of the
            dataset is converted (as ``CocoMetric`` does).
        backend (str): ``'pycocotools'`` (reference) or ``'faster-coco-eval'`` (several times
            faster, bit-identical figures).
        metric (str): Only ``'bbox'``; accepted so that the keys of mmdet's ``CocoMetric``
            evaluator (``metric='bbox'``) can be inherited by a config.
        classwise (bool): Also log the twelve figures per class and report per-class AP.
        format_only (bool): Only write ``<outfile_prefix>.bbox.json`` (e.g. for test-dev).
        outfile_prefix (str, optional): Prefix of the output files: ``.bbox.json`` (detections)
            and ``.metrics.json`` (the twelve figures, and per class, for
            ``tools/analysis/detection_table.py``). If None, detections go to a temporary
            directory and no metrics file is written.
        backend_args (dict, optional): File backend arguments for ``ann_file``.
        collect_device (str): Device for collecting results across ranks, 'cpu' or 'gpu'.
        prefix (str, optional): Metric name prefix; defaults to ``'coco'``.
    """
    default_prefix: Optional[str] = 'coco'

    def __init__(self,
                 ann_file: Optional[str] = None,
                 backend: str = 'pycocotools',
                 metric: Union[str, Sequence[str]] = 'bbox',
                 classwise: bool = False,
                 format_only: bool = False,
                 outfile_prefix: Optional[str] = None,
                 backend_args: Optional[dict] = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        if metric not in ('bbox', ['bbox'], ('bbox', )):
            raise ValueError(f"CocoTableMetric evaluates boxes only (metric='bbox'), got "
                             f'metric={metric!r}; use mmdet CocoMetric for segm/proposal.')
        super().__init__(ann_file=None, metric='bbox', classwise=classwise,
                         proposal_nums=MAX_DETS, format_only=format_only,
                         outfile_prefix=outfile_prefix, backend_args=backend_args,
                         collect_device=collect_device, prefix=prefix)
        if backend not in BACKENDS:
            raise ValueError(f'CocoTableMetric: unknown backend {backend!r}; '
                             f'choose one of {BACKENDS}.')
        import_backend(backend)  # fail now, not after inference, if it is not installed
        self.backend = backend
        self.ann_file = ann_file
        self._gt = None
        if ann_file is not None:
            with get_local_path(ann_file, backend_args=backend_args) as local_path:
                self._gt = load_gt(local_path)

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Keep the boxes, scores and labels of each prediction (and its ground truth if needed).

        Args:
            data_batch (dict): Unused (the dataloader batch).
            data_samples (Sequence[dict]): Data samples with ``pred_instances``, ``img_id`` and
                ``ori_shape`` (and ``instances`` when no ``ann_file`` was given).
        """
        for sample in data_samples:
            pred = sample['pred_instances']
            result = dict(img_id=sample['img_id'],
                          bboxes=pred['bboxes'].float().cpu().numpy(),
                          scores=pred['scores'].float().cpu().numpy(),
                          labels=pred['labels'].cpu().numpy())
            gt = dict(img_id=sample['img_id'], width=sample['ori_shape'][1],
                      height=sample['ori_shape'][0])
            if self._gt is None:
                if 'instances' not in sample:
                    raise KeyError('CocoTableMetric: without ann_file the ground truth must come '
                                   "with the data samples ('instances'); set ann_file to the "
                                   "dataset's COCO annotation file.")
                gt['anns'] = sample['instances']
            self.results.append((gt, result))

    def _category_ids(self) -> list:
        """COCO category id of each label, as ``CocoDataset`` maps them (annotation file order)."""
        classes = list(self.dataset_meta['classes'])
        by_name = {}
        for cat in self._gt['categories']:
            by_name.setdefault(cat['name'], []).append(cat['id'])
        missing = [c for c in classes if c not in by_name]
        if missing:
            raise CocoFormatError(
                f'CocoTableMetric: dataset classes {missing[:5]} are not categories of the '
                f"annotation file '{self.ann_file}'; the evaluator's ann_file does not match the "
                "dataset's metainfo classes.")
        duplicated = [c for c in classes if len(by_name[c]) > 1]
        if duplicated:
            raise CocoFormatError(
                f"CocoTableMetric: annotation file '{self.ann_file}' has several categories "
                f'named {duplicated[:5]}; labels cannot be mapped to category ids.')
        wanted = set(classes)
        return [cat['id'] for cat in self._gt['categories'] if cat['name'] in wanted]

    def compute_metrics(self, results: list) -> Dict[str, float]:
        """Evaluate the collected results.

        Args:
            results (list): ``(gt, prediction)`` pairs made by ``process()``.

        Returns:
            dict: The twelve figures (and aliases / per-class AP, see the class docstring).
        """
        logger: MMLogger = MMLogger.get_current_instance()
        gts, preds = zip(*results)
        tmp_dir = None
        if self.outfile_prefix is None:
            tmp_dir = tempfile.TemporaryDirectory()
            outfile_prefix = osp.join(tmp_dir.name, 'results')
        else:
            outfile_prefix = self.outfile_prefix
        try:
            return self._evaluate(gts, preds, outfile_prefix, logger)
        finally:
            if tmp_dir is not None:
                tmp_dir.cleanup()

    def _evaluate(self, gts: Sequence[dict], preds: Sequence[dict], outfile_prefix: str,
                  logger: MMLogger) -> Dict[str, float]:
        if self._gt is None:
            logger.info('Converting ground truth to coco format...')
            self._gt = load_gt(self.gt_to_coco_json(gt_dicts=gts, outfile_prefix=outfile_prefix))
        if self.cat_ids is None:
            self.cat_ids = self._category_ids()
        img_ids = sorted({gt['img_id'] for gt in gts})
        known = {img['id'] for img in self._gt['images']}
        unknown = [i for i in img_ids if i not in known]
        if unknown:
            raise CocoFormatError(
                f'CocoTableMetric: {len(unknown)} tested image ids are not in the annotation '
                f"file '{self.ann_file}' (e.g. {unknown[:5]}); the evaluator's ann_file does not "
                "match the dataset's ann_file.")
        if len(img_ids) < len(known):
            logger.warning(f'CocoTableMetric: evaluating the {len(img_ids)} tested images out of '
                           f'the {len(known)} of the annotation file.')

        result_files = self.results2json(preds, outfile_prefix)
        if self.format_only:
            logger.info(f'results are saved in {osp.dirname(outfile_prefix)}')
            return OrderedDict()
        dets = load(result_files['bbox'])
        logger.info(f'Evaluating bbox with {self.backend} ({len(dets)} detections on '
                    f'{len(img_ids)} images)...')
        result = evaluate_bbox(self._gt, dets, backend=self.backend, img_ids=img_ids,
                               cat_ids=self.cat_ids, classwise=self.classwise, validate=False)
        logger.info('\n' + '\n'.join(result.summary_lines()))
        if self.classwise:
            logger.info('\n' + _per_class_table(result.per_class))

        eval_results = OrderedDict()
        for name in FIGURE_NAMES:
            eval_results[f'bbox_{name}'] = result.figures[name]
        eval_results['bbox_mAP'] = result.figures['AP']
        if self.classwise:
            for cls, figures in result.per_class.items():
                eval_results[f'bbox_AP_{cls}'] = figures['AP']
        logger.info('bbox_copypaste (AP AP50 AP75 APs APm APl AR1 AR10 AR100 ARs ARm ARl): ' +
                    ' '.join(f'{result.figures[n]:.3f}' for n in FIGURE_NAMES))
        if self.outfile_prefix is not None:
            self._dump_metrics(result, f'{outfile_prefix}.metrics.json')
        return eval_results

    def _dump_metrics(self, result, path: str) -> None:
        payload = dict(backend=result.backend, num_images=result.num_images,
                       num_detections=result.num_detections, ann_file=self.ann_file,
                       bbox=dict(result.figures),
                       per_class={k: dict(v) for k, v in result.per_class.items()})
        with open(path, 'w') as f:
            json.dump(payload, f, indent=1, allow_nan=True)


def _per_class_table(per_class: Dict[str, dict]) -> str:
    """The twelve figures per class (percent) as a plain text table."""
    from terminaltables import AsciiTable
    rows = [['category'] + list(FIGURE_NAMES)]
    for cls, figures in per_class.items():
        rows.append([cls] + [('nan' if v != v else f'{100 * v:.1f}') for v in figures.values()])
    return AsciiTable(rows).table
