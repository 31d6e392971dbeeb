"""A trained model as one ONNX file (through tf2onnx), and reading it back with onnxruntime.

    python -m captioner.export RUN OUT --format onnx [--beam-size 3]

writes `OUT/model.onnx`, `OUT/vocab.txt` and `OUT/export.json`. The graph
takes `pixels` uint8 `[B, S, S, 3]` (RGB at the model's image size; callers
resize) and returns `tokens` int32 `[B, L]` and `scores` float32 `[B]` (and the
n-best, see `captioner.inference.exported`), like the LiteRT file: the search
loop is inside, an ONNX `Loop` (tf2onnx converts TensorFlow's while loop, its
top-k, batched gathers and scatters), so no decoding code is needed beside it.

Converter notes (tf2onnx 1.17 on TensorFlow 2.21, opset 17):

- Keras' exact GELU (the Transformer's feed-forward layer) is `erfc`, which
  tf2onnx does not map ("Tensorflow op [...Gelu/Erfc: Erfc] is not
  supported", and onnxruntime then refuses the file: "No Op registered for
  Erfc with domain_version of 17"); `Erfc` is registered here as `1 - Erf`.
- tf2onnx maps `tf.scatter_nd` to ONNX `ScatterND` without a reduction, so
  where indices repeat one update wins, where TensorFlow (and LiteRT) add
  them: diverse beam search counts the words earlier groups chose with it, and
  its ONNX captions differed from the run's on 2 of 100 images (by up to 1.8
  in score). `ScatterNd` is registered here with `reduction="add"` (opset 16+).
- The tokenizer's string tables must stay out of the function (see
  `exported.pixels_function`): with them tf2onnx fails to freeze it ("Failed
  to import metagraph", grappler: "Fetch node GatherV2_1/params doesn't exist
  in graph").
- A converted graph is checked op by op against the ONNX schemas before it is
  written: an op tf2onnx passed through unconverted fails the export.
"""

import logging
import os
import shutil

import numpy as np

from captioner.inference import exported

OPSET = 17


def _register_converters():
    """Teaches tf2onnx what it gets wrong or lacks here, once: `Erfc` and `ScatterNd` (see the module docstring)."""
    from tf2onnx import handler, utils
    from tf2onnx.onnx_opset.tensor import ScatterND

    if getattr(_register_converters, "done", False):
        return

    @handler.tf_op("Erfc")
    class Erfc:  # noqa: F841 (registered by the decorator)
        """Keras' exact GELU: `erfc(x) = 1 - erf(x)`."""

        @classmethod
        def version_9(cls, ctx, node, **kwargs):
            dtype = ctx.get_dtype(node.input[0])
            node.type = "Erf"
            one = ctx.make_const(utils.make_name(f"{node.name}_one"), np.array(1, utils.map_onnx_to_numpy_type(dtype)))
            complement = ctx.insert_new_node_on_output("Sub", node.output[0], name=utils.make_name(f"{node.name}_1m"),
                                                       inputs=[one.output[0], node.output[0]])
            ctx.set_dtype(complement.output[0], dtype)
            ctx.copy_shape(node.output[0], complement.output[0])

    @handler.tf_op("ScatterNd", onnx_op="ScatterND")
    class ScatterNdAdding:  # noqa: F841 (registered by the decorator)
        """`tf.scatter_nd` adds the updates of repeated indices; ONNX's ScatterND does so with reduction "add"
        (opset 16 on), where tf2onnx's own handler leaves it out and one update wins."""

        @classmethod
        def version_16(cls, ctx, node, **kwargs):
            ScatterND.version_11(ctx, node, **kwargs)
            node.set_attr("reduction", "add")

    _register_converters.done = True


def _unknown_ops(graph):
    """`(domain, op)` of the nodes of an ONNX graph and its subgraphs (loop bodies) that no ONNX schema defines."""
    import onnx

    unknown = set()
    for node in graph.node:
        if not onnx.defs.has(node.op_type, node.domain or ""):
            unknown.add((node.domain or "ai.onnx", node.op_type))
        for attribute in node.attribute:
            for subgraph in ([attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else list(attribute.graphs)):
                unknown |= _unknown_ops(subgraph)
    return unknown


def convert(model, decoding, max_length=None, opset=OPSET):
    """The ONNX `ModelProto` of `model` with `decoding` inside; `exported.ExportError` for what does not convert."""
    try:
        import tf2onnx
    except ImportError:
        raise exported.ExportError("--format onnx needs tf2onnx and onnx: pip install tf2onnx onnxruntime (or the "
                                   "package's export extra, pip install -e \".[export]\")") from None
    problem = exported.unsupported("onnx", decoding)
    if problem:
        raise exported.ExportError(problem)
    _register_converters()
    tf2onnx.logging.set_level(logging.ERROR)
    function = exported.pixels_function(model, decoding, max_length)
    with exported.quiet_tensorflow_warnings():
        proto, _ = tf2onnx.convert.from_function(function, input_signature=function.input_signature, opset=opset)
    unknown = _unknown_ops(proto.graph)
    if unknown:
        raise exported.ExportError(
            f"an ONNX export cannot carry {decoding.describe()}: tf2onnx left "
            f"{', '.join(sorted(op for _, op in unknown))} unconverted (no ONNX opset {opset} op); choose another "
            "decoding or a SavedModel")
    proto.producer_name = "captioner"
    return proto


def export(model, out_dir, decoding, max_length=None, opset=OPSET):
    """Writes `out_dir` (which must not exist): `model.onnx`, `vocab.txt` and `export.json`; nothing if it fails."""
    from captioner.data.tokenizer import save_vocabulary

    proto = convert(model, decoding, max_length, opset)
    partial = exported.make_partial_folder(out_dir)
    try:
        with open(os.path.join(partial, exported.MODEL_FILES["onnx"]), "wb") as handle:
            handle.write(proto.SerializeToString())
        save_vocabulary(model.tokenizer, os.path.join(partial, exported.VOCABULARY))
        exported.write_info(partial, model, "onnx", decoding, max_length, opset=opset)
        os.rename(partial, out_dir)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return out_dir


class ONNXCaptioner(exported.ExportedCaptioner):
    """An `.onnx` export run with onnxruntime on the CPU."""

    format = "onnx"

    def _open(self):
        try:
            import onnxruntime
        except ImportError:
            raise exported.ExportError("reading an ONNX export needs onnxruntime: pip install onnxruntime (or the "
                                       "package's export extra, pip install -e \".[export]\")") from None
        options = onnxruntime.SessionOptions()
        if self.num_threads:
            options.intra_op_num_threads = self.num_threads
        options.log_severity_level = 3  # no warnings about unused initialisers on every load
        self._session = onnxruntime.InferenceSession(self.path, options, providers=["CPUExecutionProvider"])
        self._outputs = [output.name for output in self._session.get_outputs()]

    def _input_size(self):
        return int(self._session.get_inputs()[0].shape[1])

    def _run(self, pixels):
        values = self._session.run(self._outputs, {"pixels": np.ascontiguousarray(pixels)})
        return self._from_tokens(dict(zip(self._outputs, values)))
