"""TensorFlow-side helpers shared by train_demo.py and make_fixtures.py.

Only the training venv imports this (TensorFlow is never a runtime or test
dependency). It covers the parts of turning a Keras model into the kind of
.tflite file the agent reads that the stock converter does not do by itself:

* the SSD post-processing op (TFLite_Detection_PostProcess), emitted by the
  converter from a ``tf.function`` that declares it implements that op;
* full-integer quantization from a saved model (Keras 3 models are exported
  through ``keras.export.ExportArchive``; converting them directly leaves
  unfrozen variables that break calibration);
* rewriting the flatbuffer afterwards: the converter scrambles the output
  order, so the outputs are set back to the op's own order (TF1, what Coral
  models use) or to TF2's; DEQUANTIZE ops feeding the op are moved right before
  it so everything the Edge TPU runs stays one contiguous block; custom op
  codes can be renamed.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

POSTPROCESS_OP = "TFLite_Detection_PostProcess"
# The op's outputs, in its own order (TF1 order).
POSTPROCESS_OUTPUTS = ("boxes", "classes", "scores", "count")
# What the TF2 object detection API's TFLite export shows: scores, boxes, count, classes.
TF2_ORDER = ("scores", "boxes", "count", "classes")
TF2_SIGNATURE_NAMES = {
    "boxes": "detection_boxes",
    "classes": "detection_classes",
    "scores": "detection_scores",
    "count": "num_detections",
}
# Box coder scales of the TF object detection API (y, x, h, w).
BOX_SCALES = (10.0, 10.0, 5.0, 5.0)


def postprocess_signature(
    num_classes: int,
    max_detections: int,
    score_threshold: float,
    iou_threshold: float,
    scales: Sequence[float] = BOX_SCALES,
) -> str:
    y, x, h, w = scales
    attrs = [
        f'name: "{POSTPROCESS_OP}"',
        f'attr {{ key: "max_detections" value {{ i: {max_detections} }} }}',
        'attr { key: "max_classes_per_detection" value { i: 1 } }',
        'attr { key: "detections_per_class" value { i: 100 } }',
        'attr { key: "use_regular_nms" value { b: false } }',
        f'attr {{ key: "nms_score_threshold" value {{ f: {score_threshold:f} }} }}',
        f'attr {{ key: "nms_iou_threshold" value {{ f: {iou_threshold:f} }} }}',
        f'attr {{ key: "y_scale" value {{ f: {y:f} }} }}',
        f'attr {{ key: "x_scale" value {{ f: {x:f} }} }}',
        f'attr {{ key: "h_scale" value {{ f: {h:f} }} }}',
        f'attr {{ key: "w_scale" value {{ f: {w:f} }} }}',
        f'attr {{ key: "num_classes" value {{ i: {num_classes} }} }}',
    ]
    return " ".join(attrs)


def detection_postprocess(
    num_classes: int,
    max_detections: int = 25,
    score_threshold: float = 0.05,
    iou_threshold: float = 0.5,
) -> Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tuple[tf.Tensor, ...]]:
    """A function the converter replaces by TFLite_Detection_PostProcess.

    Inputs: box encodings [1, N, 4] (ty, tx, th, tw), class scores [1, N, C]
    (after the sigmoid; no background column), anchors [N, 4] (ycenter,
    xcenter, h, w). Its TensorFlow body only gives the outputs their shapes;
    it is never meant to run.
    """

    @tf.function(
        experimental_implements=postprocess_signature(
            num_classes, max_detections, score_threshold, iou_threshold
        )
    )
    def postprocess(
        box_encodings: tf.Tensor, class_scores: tf.Tensor, anchors: tf.Tensor
    ) -> tuple[tf.Tensor, ...]:
        boxes = tf.zeros([1, max_detections, 4], tf.float32, name="boxes")
        classes = tf.zeros([1, max_detections], tf.float32, name="classes")
        scores = tf.zeros([1, max_detections], tf.float32, name="scores")
        count = tf.zeros([1], tf.float32, name="num_detections")
        return boxes, classes, scores, count

    return postprocess


def export_saved_model(
    model: tf.keras.Model | tf.Module,
    serve: Callable[[tf.Tensor], object],
    input_spec: tf.TensorSpec,
    directory: Path,
) -> None:
    """Write ``serve`` as the "serve" endpoint of a saved model, with the model's variables."""
    import keras

    if not isinstance(model, keras.Model):
        # A plain tf.Module with tf.Variables saves (and freezes) the ordinary way.
        concrete = tf.function(serve).get_concrete_function(input_spec)
        tf.saved_model.save(model, str(directory), signatures={"serve": concrete})
        return
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name="serve", fn=serve, input_signature=[input_spec])
    archive.write_out(str(directory), verbose=False)


def convert(
    model: tf.keras.Model | tf.Module,
    serve: Callable[[tf.Tensor], object],
    input_spec: tf.TensorSpec,
    representative: Callable[[], Iterable[list[np.ndarray]]] | None,
    *,
    input_type: tf.DType = tf.uint8,
    output_type: tf.DType | None = None,
    custom_ops: bool = False,
) -> bytes:
    """Convert through a saved model; with ``representative``, fully int8-quantized."""
    with tempfile.TemporaryDirectory() as tmp:
        export_saved_model(model, serve, input_spec, Path(tmp))
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=["serve"])
        if representative is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = representative
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = input_type
            if output_type is not None:
                converter.inference_output_type = output_type
        converter.allow_custom_ops = custom_ops
        return bytes(converter.convert())


# --- flatbuffer surgery -------------------------------------------------------------------


def _custom_code(model: schema.ModelT, op: schema.OperatorT) -> str:
    code = model.operatorCodes[op.opcodeIndex].customCode
    return code.decode() if isinstance(code, bytes) else (code or "")


def _postprocess_op(model: schema.ModelT) -> schema.OperatorT:
    ops = [op for op in model.subgraphs[0].operators if _custom_code(model, op) == POSTPROCESS_OP]
    if len(ops) != 1:
        raise ValueError(f"expected one {POSTPROCESS_OP} op, found {len(ops)}")
    return ops[0]


def _move_dequantize_before(model: schema.ModelT, target: schema.OperatorT) -> None:
    """DEQUANTIZE ops whose output feeds ``target`` go right before it, keeping their order."""
    graph = model.subgraphs[0]
    dequantize = schema.BuiltinOperator.DEQUANTIZE

    def is_feeding_dequantize(op: schema.OperatorT) -> bool:
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        return builtin == dequantize and op.outputs[0] in list(target.inputs)

    moving = [op for op in graph.operators if is_feeding_dequantize(op)]
    rest = [op for op in graph.operators if not is_feeding_dequantize(op)]
    at = rest.index(target)
    graph.operators = rest[:at] + moving + rest[at:]


def rewrite_ssd(
    tflite: bytes,
    order: Sequence[str] = POSTPROCESS_OUTPUTS,
    *,
    signature: bool = False,
) -> bytes:
    """Set the model's outputs to the post-processing op's outputs in ``order``.

    Output tensors are named as in TF1 exports ("TFLite_Detection_PostProcess",
    ":1", ":2", ":3"). With ``signature`` the model keeps one "serving_default"
    signature naming the outputs as TF2 exports do; otherwise it has none, like
    Coral's TF1 models.
    """
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite))
    graph = model.subgraphs[0]
    op = _postprocess_op(model)
    by_role = dict(zip(POSTPROCESS_OUTPUTS, op.outputs, strict=True))
    for slot, role in enumerate(POSTPROCESS_OUTPUTS):
        name = POSTPROCESS_OP if slot == 0 else f"{POSTPROCESS_OP}:{slot}"
        graph.tensors[by_role[role]].name = name.encode()
    graph.outputs = [by_role[role] for role in order]
    _move_dequantize_before(model, op)
    if signature:
        sig = schema.SignatureDefT()
        sig.signatureKey = b"serving_default"
        sig.subgraphIndex = 0
        sig.inputs = [_tensor_map(b"images", graph.inputs[0])]
        sig.outputs = [_tensor_map(TF2_SIGNATURE_NAMES[r].encode(), by_role[r]) for r in order]
        model.signatureDefs = [sig]
    else:
        model.signatureDefs = []
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _tensor_map(name: bytes, index: int) -> schema.TensorMapT:
    item = schema.TensorMapT()
    item.name = name
    item.tensorIndex = index
    return item


def drop_signatures(tflite: bytes) -> bytes:
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite))
    model.signatureDefs = []
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def rename_custom_op(tflite: bytes, old: str, new: str) -> bytes:
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite))
    flatbuffer_utils.rename_custom_ops(model, {old: new})
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def op_names(tflite: bytes) -> list[str]:
    """Operator names in execution order, custom ops by their code."""
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite))
    names = []
    for op in model.subgraphs[0].operators:
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        if builtin == schema.BuiltinOperator.CUSTOM:
            names.append(_custom_code(model, op))
        else:
            names.append(flatbuffer_utils.opcode_to_name(model, op.opcodeIndex))
    return names
