"""Write a small, deterministic COCO-format detection dataset of drawn shapes.

The dataset is the project's bundled default data: it needs no download, it is the same bytes for
the same arguments on every machine, and a detector learns it in minutes on a CPU. Each image has a
textured background (colour gradient, noise and thin clutter lines) and 1 to ``--max-objects``
shapes of random colour. Shape sizes are drawn evenly from COCO's three area ranges (small < 32^2,
medium < 96^2, large) so AP_s, AP_m and AP_l all mean something.

Layout written under ``--out``::

    train/000000.jpg ...            val/000000.jpg ...
    annotations/instances_train.json
    annotations/instances_val.json
    dataset_info.json               (the arguments used; a rerun with the same ones does nothing)

Example::

    .venv/bin/python tools/data/make_synthetic_coco.py --out data/synthetic_coco
    .venv/bin/python tools/data/make_synthetic_coco.py --out data/tiny_coco --num-train 16 \\
        --num-val 8 --image-size 128
"""
import argparse
import json
import math
import os
import os.path as osp
import sys

import numpy as np
from PIL import Image, ImageDraw

CATEGORIES = ('circle', 'square', 'triangle', 'cross', 'ring')
# Side-length ranges (fraction of the image side) for COCO's small / medium / large area ranges,
# for a 320-pixel image: small 10-28 px, medium 38-86 px, large 104-190 px.
SIZE_RANGES = ((10 / 320, 28 / 320), (38 / 320, 86 / 320), (104 / 320, 190 / 320))
FORMAT_VERSION = 1


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Write a small deterministic COCO-format detection dataset of drawn shapes.')
    parser.add_argument('--out', default='data/synthetic_coco', help='output directory')
    parser.add_argument('--num-train', type=int, default=400, help='number of training images')
    parser.add_argument('--num-val', type=int, default=100, help='number of validation images')
    parser.add_argument('--image-size', type=int, default=320, help='side of the square images')
    parser.add_argument('--max-objects', type=int, default=5, help='most objects in one image')
    parser.add_argument('--seed', type=int, default=0, help='random seed (same seed, same bytes)')
    parser.add_argument('--force', action='store_true', help='rewrite even if already up to date')
    args = parser.parse_args(argv)
    for name in ('num_train', 'num_val', 'image_size', 'max_objects'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be at least 1')
    if args.image_size < 64:
        parser.error('--image-size must be at least 64 pixels')
    return args


def _background(rng, size):
    """A colour gradient with noise and a few thin clutter lines."""
    c0, c1 = rng.uniform(40, 215, size=(2, 3))
    t = np.linspace(0.0, 1.0, size)
    angle = rng.uniform(0, 2 * math.pi)
    ramp = math.cos(angle) * t[None, :] + math.sin(angle) * t[:, None]
    ramp = (ramp - ramp.min()) / max(ramp.max() - ramp.min(), 1e-6)
    img = c0 + (c1 - c0) * ramp[..., None]
    img += rng.normal(0, 8, size=img.shape)
    image = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(2, 6)):
        xy = [float(v) for v in rng.uniform(0, size, size=4)]
        colour = tuple(int(v) for v in rng.uniform(0, 255, size=3))
        draw.line(xy, fill=colour, width=int(rng.integers(1, 3)))
    return image


def _contrasting_colour(rng, background_mean):
    """A random colour far enough from the local background to be visible."""
    while True:
        colour = rng.uniform(0, 255, size=3)
        if np.abs(colour - background_mean).sum() > 150:
            return tuple(int(v) for v in colour)


def _draw_shape(draw, category, box, colour):
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    if category == 'circle':
        draw.ellipse(box, fill=colour)
    elif category == 'square':
        draw.rectangle(box, fill=colour)
    elif category == 'triangle':
        draw.polygon([(x0 + w / 2, y0), (x1, y1), (x0, y1)], fill=colour)
    elif category == 'cross':
        t = max(w / 3, 2)
        draw.rectangle((x0, y0 + (h - t) / 2, x1, y0 + (h + t) / 2), fill=colour)
        draw.rectangle((x0 + (w - t) / 2, y0, x0 + (w + t) / 2, y1), fill=colour)
    elif category == 'ring':
        draw.ellipse(box, outline=colour, width=max(int(w / 5), 2))
    else:
        raise ValueError(f'unknown category {category!r}')


def _overlaps(box, boxes, max_iou=0.1):
    for other in boxes:
        ix = min(box[2], other[2]) - max(box[0], other[0])
        iy = min(box[3], other[3]) - max(box[1], other[1])
        if ix > 0 and iy > 0:
            inter = ix * iy
            union = ((box[2] - box[0]) * (box[3] - box[1]) +
                     (other[2] - other[0]) * (other[3] - other[1]) - inter)
            if inter / union > max_iou:
                return True
    return False


def make_image(rng, size, max_objects):
    """Draw one image.

    Args:
        rng (numpy.random.Generator): Source of randomness.
        size (int): Side of the square image in pixels.
        max_objects (int): Most objects in the image.

    Returns:
        tuple: The PIL image and a list of ``(category_index, [x, y, w, h])``.
    """
    image = _background(rng, size)
    pixels = np.asarray(image, dtype=np.float32)
    draw = ImageDraw.Draw(image)
    objects, boxes = [], []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(20):
            lo, hi = SIZE_RANGES[int(rng.integers(0, 3))]
            side = max(int(round(rng.uniform(lo, hi) * size)), 6)
            aspect = rng.uniform(0.75, 1.33)
            w = min(max(int(round(side * math.sqrt(aspect))), 6), size - 2)
            h = min(max(int(round(side / math.sqrt(aspect))), 6), size - 2)
            x0 = int(rng.integers(0, size - w))
            y0 = int(rng.integers(0, size - h))
            box = (x0, y0, x0 + w, y0 + h)
            if not _overlaps(box, boxes):
                break
        else:
            continue
        category = int(rng.integers(0, len(CATEGORIES)))
        local_mean = pixels[y0:y0 + h, x0:x0 + w].reshape(-1, 3).mean(0)
        # PIL draws inclusive end coordinates: the drawn shape spans w x h pixels.
        _draw_shape(draw, CATEGORIES[category], (x0, y0, x0 + w - 1, y0 + h - 1),
                    _contrasting_colour(rng, local_mean))
        boxes.append(box)
        objects.append((category, [x0, y0, w, h]))
    return image, objects


def write_split(out_dir, split, num_images, args, seed_offset):
    """Write the images of one split and return its COCO dictionary."""
    rng = np.random.default_rng([args.seed, seed_offset])
    os.makedirs(osp.join(out_dir, split), exist_ok=True)
    images, annotations = [], []
    for index in range(num_images):
        image, objects = make_image(rng, args.image_size, args.max_objects)
        file_name = f'{index:06d}.jpg'
        image.save(osp.join(out_dir, split, file_name), quality=92)
        image_id = index + 1
        images.append(dict(id=image_id, file_name=file_name, width=args.image_size,
                           height=args.image_size))
        for category, (x, y, w, h) in objects:
            annotations.append(dict(id=len(annotations) + 1, image_id=image_id,
                                    category_id=category + 1, bbox=[x, y, w, h],
                                    area=w * h, iscrowd=0))
    categories = [dict(id=i + 1, name=name, supercategory='shape')
                  for i, name in enumerate(CATEGORIES)]
    return dict(info=dict(description=f'iresnet-mmdet synthetic shapes ({split})',
                          version=str(FORMAT_VERSION)),
                images=images, annotations=annotations, categories=categories)


def dataset_signature(args):
    return dict(format_version=FORMAT_VERSION, num_train=args.num_train, num_val=args.num_val,
                image_size=args.image_size, max_objects=args.max_objects, seed=args.seed)


def is_up_to_date(out_dir, signature):
    info_file = osp.join(out_dir, 'dataset_info.json')
    if not osp.isfile(info_file):
        return False
    try:
        with open(info_file) as f:
            return json.load(f) == signature
    except (OSError, ValueError):
        return False


def main(argv=None):
    args = parse_args(argv)
    out_dir = args.out
    signature = dataset_signature(args)
    if not args.force and is_up_to_date(out_dir, signature):
        print(f'synthetic COCO data already in {out_dir} (use --force to rewrite)')
        return 0
    os.makedirs(osp.join(out_dir, 'annotations'), exist_ok=True)
    info_file = osp.join(out_dir, 'dataset_info.json')
    if osp.exists(info_file):  # an interrupted or different earlier run: not up to date
        os.remove(info_file)
    for offset, (split, num) in enumerate((('train', args.num_train), ('val', args.num_val))):
        coco = write_split(out_dir, split, num, args, offset)
        with open(osp.join(out_dir, 'annotations', f'instances_{split}.json'), 'w') as f:
            json.dump(coco, f)
        print(f'{split}: {len(coco["images"])} images, {len(coco["annotations"])} objects, '
              f'{len(coco["categories"])} categories')
    with open(info_file, 'w') as f:
        json.dump(signature, f)
    print(f'synthetic COCO data written to {out_dir}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
