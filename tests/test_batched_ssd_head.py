"""BatchedSSDHead against mmdet's own SSDHead code (FixedSSDHead, the reference).

Training: the prior assignment equals mmdet's ``MaxIoUAssigner`` exactly; losses and every
gradient equal ``SSDHead.loss_by_feat``'s within 1e-5 (relative L2 per tensor) on random batches
with the hard cases (images without boxes, 100 boxes, tiny boxes, boxes sharing a best prior,
batch 1) and on batches of the demo data. Prediction: the same detections after matching and the
same COCO figures. Launch overhead: the number of aten ops does not grow with the batch, and the
loss runs no op that synchronises with the host or has a data-dependent shape.
"""
import collections
import contextlib
import copy
import io
import os.path as osp
import subprocess
import sys

import pytest
import torch
import torch._dynamo
from mmengine.config import Config, ConfigDict
from mmengine.structures import InstanceData
from torch.utils._python_dispatch import TorchDispatchMode

import iresnet_mmdet  # noqa: F401  (registers the heads)
from iresnet_mmdet.models.dense_heads import ssd_batch_ops
from mmdet.models.task_modules.assigners import MaxIoUAssigner
from mmdet.registry import MODELS, TASK_UTILS

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO_CONFIG = osp.join(ROOT, 'configs', 'demo', 'ssd300_iresnet18_synthetic.py')
TRAINED_DIR = osp.join(ROOT, 'work_dirs', 'ssd300_iresnet18_synthetic')
TRAINED_DATA = osp.join(ROOT, 'data', 'synthetic_coco')
SIZES = (38, 19, 10, 5, 3, 1)  # SSD300's feature maps: 8732 priors
FEATMAP_SIZES = [(s, s) for s in SIZES]
NUM_CLASSES = 4
META = dict(img_shape=(300, 300), pad_shape=(300, 300), ori_shape=(300, 300),
            scale_factor=(1., 1.))
ASSIGNER = dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.,
                ignore_iof_thr=-1, gt_max_assign_all=False)


def head_cfg(head_type, channels=(8, 8, 8, 8, 8, 8), **assigner):
    """A narrow SSD300 head with the configs' anchors, coder and training settings."""
    return ConfigDict(
        type=head_type, in_channels=channels, num_classes=NUM_CLASSES, stacked_convs=0,
        anchor_generator=dict(
            type='SSDAnchorGenerator', scale_major=False, input_size=300,
            basesize_ratio_range=(0.15, 0.9), strides=[8, 16, 32, 64, 100, 300],
            ratios=[[2], [2, 3], [2, 3], [2, 3], [2], [2]]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.] * 4,
                        target_stds=[0.1, 0.1, 0.2, 0.2]),
        train_cfg=dict(assigner=dict(ASSIGNER, **assigner), sampler=dict(type='PseudoSampler'),
                       smoothl1_beta=1., allowed_border=-1, pos_weight=-1, neg_pos_ratio=3,
                       debug=False),
        test_cfg=dict(nms_pre=1000, nms=dict(type='nms', iou_threshold=0.45), min_bbox_size=0,
                      score_thr=0.05, max_per_img=200))


def head_pair(channels=(8, 8, 8, 8, 8, 8), **assigner):
    """(reference, batched) heads with the same weights (random biases, not mmdet's zeros)."""
    torch.manual_seed(0)
    ref = MODELS.build(head_cfg('FixedSSDHead', channels, **assigner))
    with torch.no_grad():
        for conv in [*ref.cls_convs, *ref.reg_convs]:
            conv[0].bias.normal_(0, 0.5)
    batched = MODELS.build(head_cfg('BatchedSSDHead', channels, **assigner))
    batched.load_state_dict(ref.state_dict())  # strict: same keys and shapes
    return ref, batched


def random_boxes(gen, num, min_size=2., max_size=150.):
    corner = torch.rand(num, 2, generator=gen) * 280
    size = min_size + torch.rand(num, 2, generator=gen) * (max_size - min_size)
    return torch.cat([corner, (corner + size).clamp(max=300)], dim=1)


def shared_prior_boxes():
    """Boxes whose best priors coincide: an exact duplicate with another label (positives above
    0.5 go to the first, the forced best prior to the last), and tiny boxes (IoU < 0.5 with every
    prior: matched only as some prior's best box) around one point."""
    big = torch.tensor([[40., 40., 140., 120.], [40., 40., 140., 120.]])
    tiny = torch.tensor([[100., 100., 104., 103.], [101., 100., 105., 104.],
                         [100.5, 101., 103., 104.], [200., 30., 203., 36.]])
    return torch.cat([big, tiny]), torch.tensor([0, 1, 2, 3, 1, 0])


def gt(boxes, labels=None, gen=None):
    if labels is None:
        labels = torch.randint(NUM_CLASSES, (len(boxes), ), generator=gen)
    return InstanceData(bboxes=boxes, labels=labels)


def random_batch(kind, seed=0):
    """Ground truth of one of the test batches."""
    gen = torch.Generator().manual_seed(seed)
    empty = gt(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    if kind == 'mixed':
        return [gt(random_boxes(gen, 3), gen=gen), empty, gt(random_boxes(gen, 100), gen=gen),
                gt(*shared_prior_boxes())]
    if kind == 'batch1':
        return [gt(random_boxes(gen, 5), gen=gen)]
    if kind == 'tiny':  # and one box outside every prior (IoU 0: still forced onto prior 0)
        outside = torch.tensor([[400., 400., 420., 420.]])
        return [gt(random_boxes(gen, 20, 1., 6.), gen=gen),
                gt(torch.cat([random_boxes(gen, 7, 1., 4.), outside]), gen=gen)]
    if kind == 'all_empty':
        return [empty, empty, empty]
    raise ValueError(kind)


def features(num_images, channels=(8, 8, 8, 8, 8, 8), seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(num_images, c, s, s, generator=gen) for c, s in zip(channels, SIZES)]


def loss_and_grads(head, feats, gts, metas=None):
    """Total loss components and the gradients of every parameter and input feature."""
    feats = [f.clone().requires_grad_(True) for f in feats]
    losses = head.loss_by_feat(*head(feats), gts, metas or [META] * len(gts))
    total = {k: sum(v) if isinstance(v, list) else v for k, v in losses.items()}
    head.zero_grad()
    (total['loss_cls'] + total['loss_bbox']).backward()
    grads = [p.grad for p in head.parameters()] + [f.grad for f in feats]
    return {k: v.detach().reshape(()) for k, v in total.items()}, grads


def relative_l2(got, ref):
    return ((got - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def assert_same_losses(ref_head, batched_head, feats, gts):
    ref_losses, ref_grads = loss_and_grads(ref_head, feats, gts)
    losses, grads = loss_and_grads(batched_head, feats, gts)
    for key in ('loss_cls', 'loss_bbox'):
        torch.testing.assert_close(losses[key], ref_losses[key], rtol=1e-5, atol=1e-7, msg=key)
    assert len(grads) == len(ref_grads)
    for index, (got, expected) in enumerate(zip(grads, ref_grads)):
        assert expected is not None and got is not None
        if expected.norm() == 0:
            assert got.norm() == 0, index
        else:
            assert relative_l2(got, expected) <= 1e-5, index
    return ref_losses


# ---- targets ------------------------------------------------------------------------------------


@pytest.mark.parametrize('assigner', [
    {},  # the configs' rule
    dict(gt_max_assign_all=True),
    dict(pos_iou_thr=0.6, neg_iou_thr=(0.1, 0.4), min_pos_iou=0.3),
    dict(match_low_quality=False),
])
def test_assignment_is_mmdets(assigner):
    """gt_inds of every prior, exactly those of mmdet's MaxIoUAssigner, image by image."""
    head = MODELS.build(head_cfg('BatchedSSDHead', **assigner))
    reference = TASK_UTILS.build(dict(ASSIGNER, **assigner))
    assert isinstance(reference, MaxIoUAssigner)
    priors = head._priors(FEATMAP_SIZES, 'cpu', torch.float32)
    for seed in range(2):
        gts = random_batch('mixed', seed) + random_batch('tiny', seed)
        boxes, labels, filled = ssd_batch_ops.pad_ground_truth(
            [g.bboxes for g in gts], [g.labels for g in gts], 'cpu')
        got = ssd_batch_ops.assign(ssd_batch_ops.box_iou(boxes, priors), filled, None,
                                   head._loss_settings)
        for image, instances in enumerate(gts):
            expected = reference.assign(InstanceData(priors=priors), instances).gt_inds
            assert torch.equal(got[image], expected), (seed, image)


def test_shared_best_prior_goes_to_the_last_box():
    """The case the rule's order matters for: the test data has it (and mmdet's result differs
    from the first box winning)."""
    priors = MODELS.build(head_cfg('BatchedSSDHead'))._priors(FEATMAP_SIZES, 'cpu', torch.float32)
    boxes, labels = shared_prior_boxes()
    result = TASK_UTILS.build(ASSIGNER).assign(InstanceData(priors=priors), gt(boxes, labels))
    from mmdet.structures.bbox import bbox_overlaps
    best = bbox_overlaps(boxes, priors).argmax(dim=1)
    assert best[0] == best[1] and result.gt_inds[best[0]] == 2  # duplicate: the last box
    assert len(set(best[2:5].tolist())) < 3  # tiny boxes sharing a best prior
    shared = best[2:5].mode().values
    assert result.gt_inds[shared] == 2 + 1 + (best[2:5] == shared).nonzero().max()
    assert (bbox_overlaps(boxes[2:], priors).max(dim=1).values < 0.5).all()


# ---- losses and gradients ------------------------------------------------------------------------


@pytest.mark.parametrize('kind', ['mixed', 'batch1', 'tiny', 'all_empty'])
def test_losses_and_gradients_equal_mmdets(kind):
    ref, batched = head_pair()
    gts = random_batch(kind)
    ref_losses = assert_same_losses(ref, batched, features(len(gts)), gts)
    if kind == 'all_empty':  # no positive: nothing to learn, but a finite loss
        assert ref_losses['loss_cls'] == 0 and ref_losses['loss_bbox'] == 0
    else:
        assert ref_losses['loss_bbox'] > 0


def test_losses_equal_mmdets_with_other_assigner_settings():
    ref, batched = head_pair(gt_max_assign_all=True, neg_iou_thr=(0.1, 0.4), min_pos_iou=0.3)
    gts = random_batch('mixed', seed=1)
    assert_same_losses(ref, batched, features(len(gts), seed=1), gts)


def demo_detectors(head_types):
    """The demo detector once per head type, with the same random weights."""
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    cfg = Config.fromfile(DEMO_CONFIG)
    cfg.model.bbox_head.type = head_types[0]
    torch.manual_seed(0)
    first = MODELS.build(cfg.model)
    models = [first]
    for head_type in head_types[1:]:
        cfg.model.bbox_head.type = head_type
        model = MODELS.build(cfg.model)
        model.load_state_dict(first.state_dict())
        models.append(model)
    return models


@pytest.fixture(scope='module')
def demo_data(tmp_path_factory):
    """Demo data (the trained demo's data if present, else 4 + 8 generated images)."""
    if osp.isdir(TRAINED_DATA) and osp.isfile(osp.join(TRAINED_DIR, 'last_checkpoint')):
        return TRAINED_DATA
    out = tmp_path_factory.mktemp('synthetic_coco')
    subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'data', 'make_synthetic_coco.py'),
                    '--out', str(out), '--num-train', '4', '--num-val', '8'],
                   check=True, capture_output=True)
    return str(out)


def demo_batch(data_root, split, indices):
    """A collated batch of the demo data through the config's own pipeline."""
    from mmdet.registry import DATASETS
    from mmengine.dataset import pseudo_collate
    cfg = Config.fromfile(DEMO_CONFIG)
    loader = cfg.train_dataloader if split == 'train' else cfg.test_dataloader
    dataset_cfg = loader.dataset
    dataset_cfg.data_root = f'{data_root}/'
    with contextlib.redirect_stdout(io.StringIO()):
        dataset = DATASETS.build(dataset_cfg)
    return pseudo_collate([dataset[i] for i in indices]), dataset


def test_demo_detector_losses_and_gradients_equal_mmdets(demo_data):
    """The whole demo detector on a batch of the demo data: same losses and gradients."""
    ref, batched = demo_detectors(['FixedSSDHead', 'BatchedSSDHead'])
    data, _ = demo_batch(demo_data, 'train', range(3))
    results = []
    for model in (ref, batched):
        model.train()
        torch.manual_seed(1)
        batch = model.data_preprocessor(copy.deepcopy(data), True)
        losses = model.loss(batch['inputs'], batch['data_samples'])
        loss, log_vars = model.parse_losses(losses)
        model.zero_grad()
        loss.backward()
        results.append((log_vars, [p.grad for p in model.parameters()]))
    (ref_vars, ref_grads), (vars_, grads) = results
    for key in ('loss_cls', 'loss_bbox'):
        assert vars_[key].item() == pytest.approx(ref_vars[key].item(), rel=1e-5)
    for got, expected in zip(grads, ref_grads):
        assert relative_l2(got, expected) <= 1e-5


def test_checkpoint_keys_unchanged():
    """A checkpoint of the FixedSSDHead detector loads into the batched one (strict)."""
    fixed, batched = demo_detectors(['FixedSSDHead', 'BatchedSSDHead'])
    assert list(batched.state_dict()) == list(fixed.state_dict())
    assert type(batched.bbox_head).__name__ == 'BatchedSSDHead'
    assert isinstance(batched.bbox_head, type(fixed.bbox_head))


# ---- bad input -----------------------------------------------------------------------------------


def test_zero_width_boxes_are_left_out():
    """mmdet's regression target of a box without width is log(0): an infinite loss. The batched
    head leaves such boxes out: its loss is mmdet's without them."""
    ref, batched = head_pair()
    gen = torch.Generator().manual_seed(3)
    good = random_boxes(gen, 4)
    bad = torch.tensor([[50., 60., 50., 90.], [10., 10., 40., 10.]])  # zero width / height
    labels = torch.tensor([0, 1, 2, 3, 1, 2])
    with_bad = [gt(torch.cat([good[:2], bad, good[2:]]), labels)]
    without = [gt(good, labels[[0, 1, 4, 5]])]
    feats = features(1)
    ref_bad, _ = loss_and_grads(ref, feats, with_bad)
    assert not torch.isfinite(ref_bad['loss_bbox'])  # mmdet's own loss
    losses, _ = loss_and_grads(batched, feats, with_bad)
    assert all(torch.isfinite(v) for v in losses.values())
    assert_same_losses(ref, batched, feats, without)
    expected, _ = loss_and_grads(ref, feats, without)
    for key, value in losses.items():
        torch.testing.assert_close(value, expected[key], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize('where', ['cls_scores', 'bbox_preds'])
def test_non_finite_head_outputs_give_a_non_finite_loss(where):
    """An overflowing (AMP) or NaN head output makes the loss non-finite, so that the AMP loss
    scaler skips the step; never a finite loss that ignores it. mmdet's loss ignores a NaN score
    of an image without boxes."""
    ref, batched = head_pair()
    gts = random_batch('mixed')
    for value in (float('nan'), float('inf')):
        outputs = list(batched(features(len(gts))))
        level = [t.detach().clone() for t in outputs[0 if where == 'cls_scores' else 1]]
        level[2][1, 0, 3, 3] = value  # image 1 has no boxes
        outputs[0 if where == 'cls_scores' else 1] = level
        losses = batched.loss_by_feat(*outputs, gts, [META] * len(gts))
        assert not all(torch.isfinite(v) for v in losses.values()), value
    if where == 'cls_scores':
        ref_losses = ref.loss_by_feat(*outputs, gts, [META] * len(gts))
        assert all(torch.isfinite(v) for v in ref_losses['loss_cls'])


def test_amp_overflow_step_is_skipped():
    """With a loss scaler (as AmpOptimWrapper uses), an infinite head output leaves the
    parameters unchanged."""
    _, batched = head_pair()
    gts = random_batch('mixed')
    optimizer = torch.optim.SGD(batched.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler('cpu', init_scale=2.**16)
    before = [p.detach().clone() for p in batched.parameters()]
    feats = features(len(gts))
    feats[0][0, 0, 5, 5] = float('inf')
    losses = batched.loss_by_feat(*batched(feats), gts, [META] * len(gts))
    scaler.scale(losses['loss_cls'] + losses['loss_bbox']).backward()
    scaler.step(optimizer)
    scaler.update()
    assert scaler.get_scale() < 2.**16
    assert all(torch.equal(p, b) for p, b in zip(batched.parameters(), before))


# ---- predictions ---------------------------------------------------------------------------------


def assert_same_detections(got, expected, box_tol=1e-3):
    """Equal detection sets: same count, and after sorting by (label, score) the same labels,
    scores and boxes."""
    assert len(got) == len(expected)
    if not len(expected):
        return
    for instances in (got, expected):
        assert (instances.scores[:-1] >= instances.scores[1:]).all()  # descending, as mmdet's
    order_got = sorted(range(len(got)), key=lambda i: (got.labels[i].item(), -got.scores[i].item(),
                                                      got.bboxes[i].tolist()))
    order_exp = sorted(range(len(expected)), key=lambda i: (expected.labels[i].item(),
                                                            -expected.scores[i].item(),
                                                            expected.bboxes[i].tolist()))
    assert torch.equal(got.labels[order_got], expected.labels[order_exp])
    torch.testing.assert_close(got.scores[order_got], expected.scores[order_exp], rtol=0,
                               atol=1e-6)
    torch.testing.assert_close(got.bboxes[order_got], expected.bboxes[order_exp], rtol=0,
                               atol=box_tol)


def trained_looking(head, weight_scale=10., background=4.):
    """Random head weights that give many overlapping detections of varied scores (a fresh head
    scores every class near 1 / (C + 1)); a larger ``background`` bias gives fewer."""
    with torch.no_grad():
        for conv, num_priors in zip(head.cls_convs, head.num_base_priors):
            conv[0].weight.mul_(weight_scale)
            conv[0].bias.view(num_priors, -1)[:, -1] = background
    return head


def test_predictions_equal_mmdets_on_random_heads():
    """predict_by_feat on random features, with rescaling and per-image shapes."""
    ref, batched = head_pair()
    ref.eval(), batched.eval()
    feats = features(3)
    metas = [dict(META, scale_factor=(0.5, 0.75)), dict(META, img_shape=(280, 300)), META]
    with torch.no_grad():
        for rescale in (False, True):
            expected = ref.predict_by_feat(*ref(feats), batch_img_metas=metas, rescale=rescale)
            got = batched.predict_by_feat(*batched(feats), batch_img_metas=metas,
                                          rescale=rescale)
            for g, e in zip(got, expected):
                assert len(e) == 200  # max_per_img binds: many candidates
                assert_same_detections(g, e)


def test_nms_in_chunks_is_mmdets_per_image_nms():
    """Chunked or not, the batched NMS keeps what mmcv's batched_nms keeps image by image."""
    from mmcv.ops import batched_nms
    gen = torch.Generator().manual_seed(0)
    counts = [300, 0, 50, 700, 1, 200]
    boxes, scores, labels, images = [], [], [], []
    for image, count in enumerate(counts):
        centres = torch.rand(max(1, count // 8), 2, generator=gen) * 280
        pick = torch.randint(len(centres), (count, ), generator=gen)
        corner = centres[pick] + torch.randn(count, 2, generator=gen) * 6
        boxes.append(torch.cat([corner, corner + 20 + torch.rand(count, 2, generator=gen) * 60],
                               1))
        scores.append(torch.rand(count, generator=gen))
        labels.append(torch.randint(3, (count, ), generator=gen))
        images.append(torch.full((count, ), image))
    boxes, scores, labels, images = map(torch.cat, (boxes, scores, labels, images))
    for agnostic in (False, True):
        expected = []
        for image in range(len(counts)):
            index = (images == image).nonzero().squeeze(1)
            if len(index):
                _, keep = batched_nms(boxes[index], scores[index], labels[index],
                                      dict(iou_threshold=0.45, class_agnostic=agnostic))
                expected += index[keep].tolist()
        assert 0 < len(expected) < 0.9 * len(boxes)
        classes, nms_labels = (1, labels * 0) if agnostic else (3, labels)
        for max_boxes in (10000, 400, 1):
            keep = ssd_batch_ops.batched_nms_keep(boxes, scores, images, nms_labels, counts,
                                                  classes, 0.45, max_boxes)
            assert sorted(keep.tolist()) == sorted(expected), (agnostic, max_boxes)
    assert ssd_batch_ops.nms_chunks([300, 0, 50, 700, 1, 200], 400) == [
        (0, 3, 350), (3, 1, 700), (4, 2, 201)]


def demo_predictions(model, data):
    model.eval()
    with torch.no_grad():
        batch = model.data_preprocessor(copy.deepcopy(data), False)
        return [s.pred_instances for s in model.predict(batch['inputs'], batch['data_samples'])]


def coco_stats(dataset, results_per_image, ann_file):
    """pycocotools' twelve figures of the detections."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    detections = []
    for index, instances in results_per_image:
        image_id = dataset.get_data_info(index)['img_id']
        for (x1, y1, x2, y2), score, label in zip(instances.bboxes.tolist(),
                                                  instances.scores.tolist(),
                                                  instances.labels.tolist()):
            detections.append(dict(image_id=image_id, category_id=dataset.cat_ids[label],
                                   bbox=[x1, y1, x2 - x1, y2 - y1], score=score))
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(ann_file)
        evaluator = COCOeval(coco, coco.loadRes(detections), 'bbox')
        evaluator.params.imgIds = sorted({d['image_id'] for d in detections})
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats.tolist()


def test_demo_predictions_and_coco_figures_equal_mmdets(demo_data):
    """The demo detector (the trained checkpoint if `make demo` ran, else trained-looking random
    weights) on the demo's val images in batches of 8: the same detections and COCO figures."""
    ref, batched = demo_detectors(['FixedSSDHead', 'BatchedSSDHead'])
    trained = demo_data == TRAINED_DATA
    if trained:
        from mmengine.runner import load_checkpoint
        with open(osp.join(TRAINED_DIR, 'last_checkpoint')) as f:
            path = f.read().strip()
        for model in (ref, batched):
            load_checkpoint(model, path, map_location='cpu', logger='silent')
    else:
        trained_looking(ref.bbox_head), batched.load_state_dict(ref.state_dict())
    num_images = 24 if trained else 8  # (all 100 of the trained demo's: 1 min, also equal)
    results = {'ref': [], 'batched': []}
    for start in range(0, num_images, 8):
        data, dataset = demo_batch(demo_data, 'val', range(start, min(start + 8, num_images)))
        for name, model in (('ref', ref), ('batched', batched)):
            results[name] += list(enumerate(demo_predictions(model, data), start))
    suppressed = 0
    for (_, got), (_, expected) in zip(results['batched'], results['ref']):
        assert_same_detections(got, expected)
        suppressed += len(expected) < 200
    assert sum(len(e) for _, e in results['ref']) > 5 * num_images  # trained: ~10 per image
    ann_file = osp.join(demo_data, 'annotations', 'instances_val.json')
    stats = coco_stats(dataset, results['batched'], ann_file)
    assert stats == coco_stats(dataset, results['ref'], ann_file)
    assert stats[0] > (0.3 if trained else -1)


# ---- launch overhead -----------------------------------------------------------------------------

#: ops that synchronise with the host or whose output shape depends on the data
SYNC_OPS = {'_local_scalar_dense', 'item', 'nonzero', 'nonzero_static', 'masked_select',
            'masked_scatter', 'unique', '_unique', '_unique2', 'unique_dim',
            'unique_consecutive', 'repeat_interleave', 'bincount', 'argwhere', 'equal'}


class OpCounter(TorchDispatchMode):
    """Counts the aten ops run under it, and those indexing with a boolean mask."""

    def __init__(self):
        super().__init__()
        self.ops = collections.Counter()
        self.boolean_indexing = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        self.ops[name] += 1
        if name in ('index', 'index_put', 'index_put_', '_index_put_impl_'):
            indices = args[1]
            if any(i is not None and i.dtype == torch.bool for i in indices):
                self.boolean_indexing += 1
        return func(*args, **(kwargs or {}))


def count_loss_ops(head, num_images):
    gen = torch.Generator().manual_seed(num_images)
    gts = [gt(random_boxes(gen, 3), gen=gen) for _ in range(num_images)]
    feats = [f.requires_grad_(True) for f in features(num_images, head.in_channels)]
    head.zero_grad(set_to_none=True)
    with OpCounter() as counter:
        losses = head.loss_by_feat(*head(feats), gts, [META] * num_images)
        sum(sum(v) if isinstance(v, list) else v for v in losses.values()).backward()
    return counter


def count_predict_ops(head, num_images):
    with torch.no_grad(), OpCounter() as counter:
        results = head.predict_by_feat(*head(features(num_images, head.in_channels)),
                                       batch_img_metas=[META] * num_images, rescale=True)
    assert all(len(r) > 0 for r in results)
    return counter


def test_op_count_does_not_grow_with_the_batch():
    """The loss (forward and backward) and the post-processing launch as many aten ops for 32
    images as for 2; mmdet's per-image code launches several times more for 8 (the counter sees
    it)."""
    ref, batched = head_pair((2, ) * 6)
    trained_looking(ref, weight_scale=1., background=6.)  # ~10 detections per image
    batched.load_state_dict(ref.state_dict())
    ref.eval(), batched.eval()
    for count in (count_loss_ops, count_predict_ops):
        count(batched, 1)  # the priors and constants are made once (per sizes and device)
        small, large = count(batched, 2), count(batched, 32)
        assert sum(large.ops.values()) == sum(small.ops.values()), (count, large.ops - small.ops)
        ref_small, ref_large = count(ref, 2), count(ref, 8)
        assert sum(ref_large.ops.values()) > 2.5 * sum(ref_small.ops.values())
    loss_ops = count_loss_ops(batched, 4)
    assert not SYNC_OPS & set(loss_ops.ops), SYNC_OPS & set(loss_ops.ops)
    assert loss_ops.boolean_indexing == 0
    assert {'sort', 'scatter_reduce'} <= set(loss_ops.ops)  # the counter sees the loss' ops


def test_loss_compiles_to_one_graph():
    """torch.compile(fullgraph=True) traces the loss (forward and backward) in one graph.

    With torch 2.13, fullgraph=True no longer refuses an ``.item()`` or a boolean mask (it traces
    them with data-dependent sizes), so Dynamo's ``explain`` must also count one graph and no
    break (it breaks on both; checked)."""
    _, head = head_pair()
    gts = random_batch('mixed')
    feats = features(len(gts))
    logits, deltas = head._flatten(*head(feats))
    padded = ssd_batch_ops.pad_ground_truth([g.bboxes for g in gts], [g.labels for g in gts],
                                            'cpu')
    args = (head._priors(FEATMAP_SIZES, 'cpu', torch.float32), *padded, None,
            head._constant('means', head.bbox_coder.means, 'cpu', torch.float32),
            head._constant('stds', head.bbox_coder.stds, 'cpu', torch.float32),
            head._loss_settings)
    explained = torch._dynamo.explain(ssd_batch_ops.ssd_loss)(logits.detach(), deltas.detach(),
                                                              *args)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), \
        explained.break_reasons
    # the 'eager' backend: Dynamo's tracing without code generation
    compiled = torch.compile(ssd_batch_ops.ssd_loss, fullgraph=True, backend='eager')
    results = []
    for loss_fn in (ssd_batch_ops.ssd_loss, compiled):
        inputs = [logits.detach().requires_grad_(True), deltas.detach().requires_grad_(True)]
        loss_cls, loss_bbox = loss_fn(*inputs, *args)
        grads = torch.autograd.grad(loss_cls + loss_bbox, inputs)
        results.append((loss_cls, loss_bbox, *grads))
    for got, expected in zip(*results):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)


def test_batched_head_is_in_the_ssd300_configs():
    for config in (DEMO_CONFIG, osp.join(ROOT, 'configs', 'ssd300',
                                          'ssd300_r50_8xb32-65e_coco.py')):
        assert Config.fromfile(config).model.bbox_head.type == 'BatchedSSDHead'
