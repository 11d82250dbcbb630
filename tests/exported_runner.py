"""Runs files written by vae-export the way their users will, in a process that cannot import
vae_cli (any attempt raises ImportError), so a file that needs vae-cli's code fails here.

    python exported_runner.py JOBS.json

JOBS.json: a list of {"format", "path", "inputs": .npz of named inputs, "outputs": .npz to write
with the named outputs}. Prints one JSON line naming the runtimes used.
"""

import importlib.abc
import json
import sys

import numpy as np


class _NoVaeCli(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "vae_cli":
            raise ImportError(f"{name} is blocked: exported files must load without vae-cli")
        return None


sys.meta_path.insert(0, _NoVaeCli())


def run_keras(path, inputs):
    import keras

    model = keras.models.load_model(path)  # safe_mode=True, and no vae_cli classes to find
    feed = [inputs[t.name] for t in model.inputs]
    out = model.predict(feed[0] if len(feed) == 1 else feed, verbose=0)
    return dict(zip(model.output_names, out if isinstance(out, list) else [out]))


def run_savedmodel(path, inputs):
    import tensorflow as tf

    serve = tf.saved_model.load(path).signatures["serving_default"]
    return {k: v.numpy() for k, v in serve(**{k: tf.constant(v) for k, v in inputs.items()}).items()}


def tflite_interpreter(path):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    return Interpreter(model_path=path)


def run_tflite(path, inputs):
    return dict(tflite_interpreter(path).get_signature_runner()(**inputs))


def run_onnx(path, inputs):
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, inputs)))


RUNNERS = {"keras": run_keras, "savedmodel": run_savedmodel, "tflite": run_tflite, "onnx": run_onnx}


def main(jobs_file):
    import warnings

    warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
    with open(jobs_file) as f:
        jobs = json.load(f)
    for job in jobs:
        with np.load(job["inputs"], allow_pickle=False) as data:
            inputs = {k: data[k] for k in data.files}
        outputs = RUNNERS[job["format"]](job["path"], inputs)
        np.savez(job["outputs"], **{k: np.asarray(v) for k, v in outputs.items()})
    print(json.dumps({"vae_cli_imported": any(m.split(".")[0] == "vae_cli" for m in sys.modules),
                      "litert": "ai_edge_litert" in sys.modules}))


if __name__ == "__main__":
    main(sys.argv[1])
