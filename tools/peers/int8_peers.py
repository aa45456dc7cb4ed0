#!/usr/bin/env python3
"""Batched int8 throughput of infer-core against TFLite (XNNPACK) and ONNX Runtime, interleaved.

The same network and test images on every side: the f32 weights of a `trainer fit` model
file become a Keras model, which TFLite quantizes to int8 (full integer, calibrated on 1,000
training images), and an ONNX graph, which ONNX Runtime quantizes statically (QDQ, int8
weights per channel, uint8 activations, the same calibration images); ours is the int8 file
`trainer fit` wrote beside it. Each round times, in turn, `firmware-sim check --json
--threads N` (its `images_per_s`: the batched pass over the 10,000 test images, the best of
at least three passes and 0.3 s), TFLite's interpreter and an ONNX Runtime session on the
same 10,000 images in batches of `--batch`, timed the same way, for every thread count; the
medians of the rounds are printed as a table.

Setup (once): python3 -m venv /tmp/peer && /tmp/peer/bin/pip install numpy ai-edge-litert tensorflow-cpu onnx onnxruntime
Run:          /tmp/peer/bin/python tools/peers/int8_peers.py --run runs/RUN/relu
"""

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HEADER = 64  # infer-core's model header: the payload starts here


def f32_layers(path, widths):
    """(weights (in, out), bias) per layer of an f32 model file: the payload is each layer's
    row-major weights then its biases, little-endian f32 (infer-core's F32Layout)."""
    raw = Path(path).read_bytes()
    at, layers = HEADER, []
    for i, o in zip(widths, widths[1:]):
        w = np.frombuffer(raw, "<f4", i * o, at).reshape(i, o)
        at += 4 * i * o
        b = np.frombuffer(raw, "<f4", o, at)
        at += 4 * o
        layers.append((w.copy(), b.copy()))
    return layers


def idx_images(path):
    data = gzip.open(path).read()
    n, rows, cols = (int.from_bytes(data[k:k + 4], "big") for k in (4, 8, 12))
    return np.frombuffer(data, np.uint8, n * rows * cols, 16).reshape(n, rows * cols)


def tflite_model(layers, calibration):
    import tensorflow as tf

    inputs = tf.keras.Input((layers[0][0].shape[0],))
    x = inputs
    for k, (w, b) in enumerate(layers):
        dense = tf.keras.layers.Dense(w.shape[1], activation=None if k + 1 == len(layers) else "relu")
        x = dense(x)
        dense.set_weights([w, b])
    model = tf.keras.Model(inputs, x)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([c[None, :]] for c in calibration)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()


def onnx_model(layers, calibration, path):
    """An f32 ONNX graph of the network (MatMul, Add, Relu), quantized by ONNX Runtime."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    nodes, inits, x = [], [], "x"
    for k, (w, b) in enumerate(layers):
        inits += [numpy_helper.from_array(w, f"w{k}"), numpy_helper.from_array(b, f"b{k}")]
        nodes += [helper.make_node("MatMul", [x, f"w{k}"], [f"m{k}"]), helper.make_node("Add", [f"m{k}", f"b{k}"], [f"z{k}"])]
        x = f"z{k}"
        if k + 1 < len(layers):
            nodes.append(helper.make_node("Relu", [x], [f"h{k}"]))
            x = f"h{k}"
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", layers[0][0].shape[0]])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["n", layers[-1][0].shape[1]])], inits)
    f32_path = str(path) + ".f32.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), f32_path)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.rows = iter(calibration[:, None, :])

        def get_next(self):
            row = next(self.rows, None)
            return None if row is None else {"x": row}

    quantize_static(f32_path, str(path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return str(path)


def best_rate(n, run_pass):
    """Images a second of the fastest of at least three passes and 0.3 s (as firmware-sim
    check times ours)."""
    best, passes, started = float("inf"), 0, time.perf_counter()
    while passes < 3 or time.perf_counter() - started < 0.3:
        start = time.perf_counter()
        run_pass()
        best = min(best, time.perf_counter() - start)
        passes += 1
    return n / best


def onnx_rate(path, images, batch, threads):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    x = images.astype(np.float32) / 255
    n = len(x) // batch * batch

    def run_pass():
        for s in range(0, n, batch):
            sess.run(None, {"x": x[s:s + batch]})

    return best_rate(n, run_pass)


def tflite_rate(flatbuffer, images, batch, threads):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=flatbuffer, num_threads=threads)
    inp = it.get_input_details()[0]
    it.resize_tensor_input(inp["index"], [batch, images.shape[1]])
    it.allocate_tensors()
    out = it.get_output_details()[0]["index"]
    # Pixels 0..255 on TFLite's int8 input grid (scale 1/255, zero point -128).
    q = (images.astype(np.int16) - 128).astype(np.int8)
    n = len(q) // batch * batch
    def run_pass():
        for s in range(0, n, batch):
            it.set_tensor(inp["index"], q[s:s + batch])
            it.invoke()
            it.get_tensor(out)

    return best_rate(n, run_pass)


def ours_rate(firmware_sim, model, threads):
    out = subprocess.run([firmware_sim, "check", "--model", str(model), "--json", "--threads", str(threads)],
                         check=True, capture_output=True, text=True).stdout
    report = json.loads(out)
    return report["images_per_s"], report["kernel"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="a model folder of a `trainer fit` run (relu/ of the study)")
    ap.add_argument("--name", default=None, help="model name in the folder (default: the folder's name)")
    ap.add_argument("--widths", default="784,512,256,10")
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--firmware-sim", default="target/release/firmware-sim")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batch", type=int, default=10000, help="TFLite's batch (the whole test set by default)")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    run = Path(args.run)
    name = args.name or run.name
    widths = [int(w) for w in args.widths.split(",")]
    layers = f32_layers(run / f"{name}.f32.fmlp", widths)
    train = idx_images(Path(args.data) / "train-images-idx3-ubyte.gz")
    test = idx_images(Path(args.data) / "t10k-images-idx3-ubyte.gz")
    calibration = train[:1000].astype(np.float32) / 255
    flatbuffer = tflite_model(layers, calibration)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = onnx_model(layers, calibration, Path(tmp) / "mlp.int8.onnx")
        threads = [int(t) for t in args.threads.split(",")]
        rates = {(who, t): [] for who in ("ours", "tflite", "onnx") for t in threads}
        kernel = None
        for r in range(args.rounds):
            for t in threads:
                rate, kernel = ours_rate(args.firmware_sim, run / f"{name}.int8.fmlp", t)
                rates[("ours", t)].append(rate)
                rates[("tflite", t)].append(tflite_rate(flatbuffer, test, args.batch, t))
                rates[("onnx", t)].append(onnx_rate(onnx_path, test, args.batch, t))
            print(f"round {r + 1}/{args.rounds}", file=sys.stderr)
    print(f"int8 {args.widths}, 10,000 Fashion-MNIST test images, batch {args.batch}; ours: {kernel}; "
          "TFLite: XNNPACK; ONNX Runtime: QDQ, CPU provider")
    print(f"cpu: {os.uname().machine}, median of {args.rounds} interleaved rounds, images/s")
    print("| threads | ours | TFLite | ONNX Runtime | ours / TFLite | ours / ONNX Runtime |")
    print("|---:|---:|---:|---:|---:|---:|")
    for t in threads:
        o, f, x = (statistics.median(rates[(who, t)]) for who in ("ours", "tflite", "onnx"))
        print(f"| {t} | {o:,.0f} | {f:,.0f} | {x:,.0f} | {o / f:.2f}x | {o / x:.2f}x |")


if __name__ == "__main__":
    main()
