"""Train the bundled demo detector on rendered baskets and export it for the agent.

    python models/train_demo.py            # train (resumes a run cut off), then export
    python models/train_demo.py --steps 0  # export an untrained model

TensorFlow is needed only here: run it from a separate venv made with
``pip install '.[train]'`` in the checkout.
The result, models/demo_ssd_int8.tflite, is a small SSD: a MobileNet-like
depthwise-separable backbone at 160x160, three feature levels (20x20, 10x10,
5x5) with six anchors per cell, fully int8-quantized with a uint8 input, and
TFLite_Detection_PostProcess at the end with its outputs in Coral's TF1 order
(boxes, classes, scores, count). BatchNorm is folded into the convolutions
before export. Training is seeded and checkpointed every few hundred steps; a
run that is stopped resumes from the last checkpoint. A run that stops at its
``--minutes`` budget before ``--steps`` exports nothing (``--out``, by default the
bundled model, is left as it is) and exits 1; the same command again resumes, and
the run that reaches ``--steps`` exports.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import demo_data  # noqa: E402
import tensorflow as tf  # noqa: E402
import tflite_tools  # noqa: E402

from agent.camera.shapes import PRODUCTS  # noqa: E402
from agent.paths import DEMO_MODEL  # noqa: E402

NUM_CLASSES = len(PRODUCTS)
WIDTH, HEIGHT = demo_data.INPUT_SIZE
# Feature levels: (cells per side, anchor sizes as fractions of the input).
LEVELS = ((20, (0.12, 0.18)), (10, (0.26, 0.36)), (5, (0.50, 0.70)))
ASPECTS = (1.0, 2.0, 0.5)  # width / height
ANCHORS_PER_CELL = 2 * len(ASPECTS)
POSITIVE_IOU = 0.5
MAX_DETECTIONS = 25
NMS_IOU = 0.4  # products in a basket rarely overlap this much; parts of one often do
# Training stages: (steps, peak learning rate, IoU below which an anchor is background).
# The first leaves anchors between 0.4 and 0.5 out of the class loss, as SSD/RetinaNet do;
# the second counts them as background, so a box around part of a product (half a banana)
# stops scoring as a product.
STAGES = ((1800, 2e-3, 0.4), (1500, 1e-3, 0.5))
TOTAL_STEPS = sum(n for n, _, _ in STAGES)
# Added to the class logits on export so that the tracker's default min_score (0.40) sits
# where too many and too few detections balance on the validation split (see README).
SCORE_LOGIT = 0.4
PRIOR = 0.01  # initial class probability, so early training is not swamped by background


# --- anchors and targets -------------------------------------------------------------------


def anchors() -> np.ndarray:
    """[N, 4] (ycenter, xcenter, h, w), normalised; level by level, cell by cell, anchor last."""
    out = []
    for cells, sizes in LEVELS:
        for row in range(cells):
            for col in range(cells):
                cy, cx = (row + 0.5) / cells, (col + 0.5) / cells
                for size in sizes:
                    for aspect in ASPECTS:
                        out.append((cy, cx, size / np.sqrt(aspect), size * np.sqrt(aspect)))
    return np.asarray(out, dtype=np.float32)


def _corners(a: np.ndarray) -> np.ndarray:
    return np.stack(
        [
            a[:, 0] - a[:, 2] / 2,
            a[:, 1] - a[:, 3] / 2,
            a[:, 0] + a[:, 2] / 2,
            a[:, 1] + a[:, 3] / 2,
        ],
        axis=1,
    )


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in a [N,4] with every box in b [G,4] (ymin, xmin, ymax, xmax)."""
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(br - tl, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / (area_a[:, None] + area_b[None, :] - inter + 1e-9)


def stage_at(step: int) -> tuple[int, int, float, float]:
    """(stage start, stage steps, peak learning rate, background IoU) for a global step."""
    start = 0
    for steps, lr, negative in STAGES:
        if step < start + steps:
            return start, steps, lr, negative
        start += steps
    return start - STAGES[-1][0], *STAGES[-1]


class StagedCosine(tf.keras.optimizers.schedules.LearningRateSchedule):
    """Cosine decay to 2% of the peak within each stage, restarting at the next."""

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        lr = tf.constant(0.0)
        start = 0
        for steps, peak, _ in STAGES:
            local = tf.clip_by_value(step - start, 0.0, float(steps))
            value = peak * (0.98 * 0.5 * (1 + tf.cos(np.pi * local / steps)) + 0.02)
            inside = tf.logical_and(step >= start, step < start + steps)
            lr = tf.where(inside, value, lr)
            start += steps
        return tf.where(step >= start, STAGES[-1][1] * 0.02, lr)

    def get_config(self) -> dict:
        return {}


def encode_targets(
    anchor: np.ndarray, boxes: np.ndarray, class_ids: np.ndarray, negative_iou: float = 0.4
) -> np.ndarray:
    """[N, 4 + C + 1]: box encodings, one-hot classes, weight (1 positive, 0 negative, -1 skip)."""
    n = len(anchor)
    out = np.zeros((n, 4 + NUM_CLASSES + 1), dtype=np.float32)
    if len(boxes) == 0:
        return out
    iou = _iou(_corners(anchor), boxes)
    best = iou.argmax(axis=1)
    best_iou = iou[np.arange(n), best]
    weight = np.where(best_iou >= POSITIVE_IOU, 1.0, np.where(best_iou < negative_iou, 0.0, -1.0))
    # Every object gets at least its best anchor, however poor the fit.
    for g, a in enumerate(iou.argmax(axis=0)):
        best[a], weight[a] = g, 1.0
    pos = weight > 0
    gt = boxes[best[pos]]
    gh, gw = gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]
    gy, gx = gt[:, 0] + gh / 2, gt[:, 1] + gw / 2
    ay, ax, ah, aw = anchor[pos].T
    sy, sx, sh, sw = tflite_tools.BOX_SCALES
    out[pos, 0] = (gy - ay) / ah * sy
    out[pos, 1] = (gx - ax) / aw * sx
    out[pos, 2] = np.log(gh / ah) * sh
    out[pos, 3] = np.log(gw / aw) * sw
    out[pos, 4 + class_ids[best[pos]]] = 1.0
    out[:, -1] = weight
    return out


def batches(anchor: np.ndarray, batch: int, start: int):
    """Endless (images in [-1, 1], targets) batches; batch k uses training samples from k*batch."""
    k = start
    while True:
        items = [demo_data.sample(demo_data.TRAIN, k * batch + j) for j in range(batch)]
        images = np.stack([s.image for s in items]).astype(np.float32) / 127.5 - 1.0
        negative = stage_at(k)[3]
        targets = np.stack([encode_targets(anchor, s.boxes, s.class_ids, negative) for s in items])
        yield images, targets
        k += 1


# --- model -------------------------------------------------------------------------------


def build(batch_norm: bool = True) -> tf.keras.Model:
    """The detector up to raw outputs: [B, N, 4] box encodings and [B, N, C] class logits.

    With ``batch_norm`` False the same layers carry biases instead, to receive
    folded weights for export.
    """
    layers = tf.keras.layers

    def norm_relu(x, name):
        if batch_norm:
            x = layers.BatchNormalization(name=f"{name}_bn")(x)
        return layers.ReLU(6.0, name=f"{name}_relu")(x)

    def conv(x, filters, kernel, stride, name):
        x = layers.Conv2D(filters, kernel, stride, "same", use_bias=not batch_norm, name=name)(x)
        return norm_relu(x, name)

    def separable(x, filters, stride, name):
        x = layers.DepthwiseConv2D(3, stride, "same", use_bias=not batch_norm, name=f"{name}_dw")(x)
        x = norm_relu(x, f"{name}_dw")
        return conv(x, filters, 1, 1, f"{name}_pw")

    image = layers.Input((HEIGHT, WIDTH, 3), name="image")
    x = conv(image, 24, 3, 2, "stem")  # 80
    x = separable(x, 32, 1, "b1")
    x = separable(x, 48, 2, "b2")  # 40
    x = separable(x, 48, 1, "b3")
    x = separable(x, 96, 2, "b4")  # 20
    f20 = separable(x, 96, 1, "b5")
    x = separable(f20, 160, 2, "b6")  # 10
    f10 = separable(x, 160, 1, "b7")
    x = separable(f10, 256, 2, "b8")  # 5
    f5 = separable(x, 256, 1, "b9")
    boxes, logits = [], []
    bias = tf.keras.initializers.Constant(-np.log((1 - PRIOR) / PRIOR))
    for feat, (cells, _) in zip((f20, f10, f5), LEVELS, strict=True):
        n = cells * cells * ANCHORS_PER_CELL
        b = layers.Conv2D(ANCHORS_PER_CELL * 4, 3, padding="same", name=f"box{cells}")(feat)
        c = layers.Conv2D(
            ANCHORS_PER_CELL * NUM_CLASSES,
            3,
            padding="same",
            bias_initializer=bias,
            name=f"cls{cells}",
        )(feat)
        boxes.append(layers.Reshape((n, 4), name=f"box{cells}_flat")(b))
        logits.append(layers.Reshape((n, NUM_CLASSES), name=f"cls{cells}_flat")(c))
    return tf.keras.Model(
        image,
        [
            layers.Concatenate(axis=1, name="box_encodings")(boxes),
            layers.Concatenate(axis=1, name="class_logits")(logits),
        ],
        name="demo_ssd",
    )


def fold_batch_norm(trained: tf.keras.Model) -> tf.keras.Model:
    """The same network with each BatchNorm folded into the convolution before it."""
    folded = build(batch_norm=False)
    for layer in folded.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        source = trained.get_layer(layer.name)
        try:
            bn = trained.get_layer(f"{layer.name}_bn")
        except ValueError:
            layer.set_weights(source.get_weights())  # heads have no BatchNorm
            continue
        kernel = source.get_weights()[0]
        gamma, beta, mean, var = bn.get_weights()
        scale = gamma / np.sqrt(var + bn.epsilon)
        if isinstance(layer, tf.keras.layers.DepthwiseConv2D):
            kernel = kernel * scale.reshape(1, 1, -1, 1)
        else:
            kernel = kernel * scale.reshape(1, 1, 1, -1)
        layer.set_weights([kernel, beta - mean * scale])
    return folded


# --- training ------------------------------------------------------------------------------


def loss_fn(targets: tf.Tensor, box_pred: tf.Tensor, logits: tf.Tensor) -> tuple[tf.Tensor, ...]:
    """Focal loss on classes over non-ignored anchors, Huber on positive boxes; per positive."""
    box_t, cls_t, weight = targets[..., :4], targets[..., 4:-1], targets[..., -1]
    positive = tf.cast(weight > 0, tf.float32)
    counted = tf.cast(weight >= 0, tf.float32)
    n_pos = tf.maximum(tf.reduce_sum(positive), 1.0)
    p = tf.sigmoid(logits)
    ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=cls_t, logits=logits)
    p_t = cls_t * p + (1 - cls_t) * (1 - p)
    alpha = cls_t * 0.25 + (1 - cls_t) * 0.75
    focal = tf.reduce_sum(alpha * (1 - p_t) ** 2 * ce, axis=-1)
    cls_loss = tf.reduce_sum(focal * counted) / n_pos
    huber = tf.keras.losses.Huber(delta=1.0, reduction="none")(
        box_t[..., None], box_pred[..., None]
    )
    box_loss = tf.reduce_sum(tf.reduce_sum(huber, axis=-1) * positive) / n_pos
    return cls_loss + box_loss, cls_loss, box_loss


def train(args: argparse.Namespace) -> tuple[tf.keras.Model, bool]:
    """The model, and whether it reached ``args.steps`` (False: stopped at ``args.minutes``)."""
    model = build()
    print(f"parameters: {model.count_params():,}", flush=True)
    optimizer = tf.keras.optimizers.Adam(StagedCosine())
    step = tf.Variable(0, dtype=tf.int64, name="step")
    ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step)
    manager = tf.train.CheckpointManager(ckpt, str(args.checkpoints), max_to_keep=2)
    if manager.latest_checkpoint:
        ckpt.restore(manager.latest_checkpoint)
        print(f"resumed at step {int(step)} from {manager.latest_checkpoint}", flush=True)
    if int(step) >= args.steps:
        return model, True

    @tf.function(reduce_retracing=True)
    def train_step(images, targets):
        with tf.GradientTape() as tape:
            box_pred, logits = model(images, training=True)
            total, cls_loss, box_loss = loss_fn(targets, box_pred, logits)
        grads = tape.gradient(total, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return total, cls_loss, box_loss

    n = len(anchors())
    # Rendering runs in a background thread of tf.data while the step computes.
    data = iter(
        tf.data.Dataset.from_generator(
            lambda: batches(anchors(), args.batch, int(step)),
            output_signature=(
                tf.TensorSpec((args.batch, HEIGHT, WIDTH, 3), tf.float32),
                tf.TensorSpec((args.batch, n, 4 + NUM_CLASSES + 1), tf.float32),
            ),
        ).prefetch(2)
    )
    deadline = time.monotonic() + args.minutes * 60
    started, first = time.monotonic(), int(step)
    while int(step) < args.steps:
        images, targets = next(data)
        total, cls_loss, box_loss = train_step(images, targets)
        step.assign_add(1)
        s = int(step)
        if s % 50 == 0:
            rate = (s - first) / (time.monotonic() - started)
            print(
                f"step {s}/{args.steps} loss {float(total):.3f} (cls {float(cls_loss):.3f} "
                f"box {float(box_loss):.3f}) {rate:.2f} steps/s",
                flush=True,
            )
        if s % args.checkpoint_every == 0:
            manager.save()
        if s < args.steps and time.monotonic() > deadline:
            manager.save()
            print(
                f"time budget of {args.minutes} min reached at step {s}/{args.steps}; "
                f"checkpoint in {args.checkpoints}; nothing exported: run again to resume",
                flush=True,
            )
            return model, False
    manager.save()
    return model, True


# --- export ------------------------------------------------------------------------------


def representative(count: int):
    def gen():
        for i in range(count):
            image = demo_data.sample(demo_data.CALIBRATION, i).image
            yield [image[None].astype(np.float32) / 127.5 - 1.0]
        # Pin the input range to exactly [-1, 1] so uint8 input = raw pixels.
        edges = np.full((1, HEIGHT, WIDTH, 3), -1.0, np.float32)
        edges[:, : HEIGHT // 2] = 1.0
        yield [edges]

    return gen


def shift_scores(model: tf.keras.Model, logit: float) -> None:
    """Add ``logit`` to every class logit, through the class heads' biases (no extra op)."""
    for cells, _ in LEVELS:
        layer = model.get_layer(f"cls{cells}")
        kernel, bias = layer.get_weights()
        layer.set_weights([kernel, bias + logit])


def export(model: tf.keras.Model, out: Path, calibration: int, score_logit: float) -> bytes:
    folded = fold_batch_norm(model)
    shift_scores(folded, score_logit)
    anchor = tf.constant(anchors())
    postprocess = tflite_tools.detection_postprocess(
        NUM_CLASSES, MAX_DETECTIONS, iou_threshold=NMS_IOU
    )

    @tf.function
    def serve(image):
        box_encodings, logits = folded(image, training=False)
        return postprocess(box_encodings, tf.sigmoid(logits), anchor)

    tflite = tflite_tools.convert(
        folded,
        serve,
        tf.TensorSpec([1, HEIGHT, WIDTH, 3], tf.float32),
        representative(calibration),
        input_type=tf.uint8,
        custom_ops=True,
    )
    tflite = tflite_tools.rewrite_ssd(tflite, tflite_tools.POSTPROCESS_OUTPUTS)
    out.write_bytes(tflite)
    ops = tflite_tools.op_names(tflite)
    print(f"wrote {out} ({len(tflite) / 1024:.0f} KiB); ops: {', '.join(ops)}", flush=True)
    return tflite


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / DEMO_MODEL)
    parser.add_argument(
        "--checkpoints", type=Path, default=Path(tempfile.gettempdir()) / "basketagent-train"
    )
    parser.add_argument("--steps", type=int, default=TOTAL_STEPS, help="stop after this many")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--minutes", type=float, default=25.0, help="wall-clock budget")
    parser.add_argument("--checkpoint-every", type=int, default=250)
    parser.add_argument("--calibration", type=int, default=200, help="calibration images")
    parser.add_argument(
        "--score-logit", type=float, default=SCORE_LOGIT, help="added to class logits on export"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.keras.utils.set_random_seed(args.seed)
    tf.config.experimental.enable_op_determinism()
    if args.steps == 0:
        model = build()
    else:
        model, done = train(args)
        if not done:
            return 1
    export(model, args.out, args.calibration, args.score_logit)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
