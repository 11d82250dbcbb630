"""A loaded run's latent space as the explorer page sees it: the held-out images' codes, their 2-D
view, the units ordered by activity, and the model calls the page asks for.

The models are loaded once (vae_cli.run.load_run, which executes nothing it reads) and every
Keras call goes through one lock: the HTTP server answers each request on its own thread, and
one model call at a time is what the CPU can do anyway.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from ..data import one_hot
from ..latent import encode_mean, principal_axes
from .png import png_data_url

# Every latent value a request may carry lies within +-Z_BOUND: far outside any trained code
# (they stay within a few units of 0), and small enough that the decoder's arithmetic stays finite.
Z_BOUND = 100.0
MAX_CODES = 10_000  # held-out images encoded at start (a few seconds for a conv model on 2 cores)
MAX_POINTS = 2_000  # of them drawn in the scatter: more only hides the points under each other
MAX_SLIDERS = 12  # the most active units get a slider; the others stay at the chosen point's values
MAX_STEPS = 32  # images in one interpolation strip


@dataclass(frozen=True)
class Nearest:
    index: int
    label: int | None
    distance: float


class LatentSpace:
    """Codes of the held-out images of `run` and decoding of latent points, thread-safe."""

    def __init__(self, run, held_out, *, name: str):
        self.run, self.name = run, name
        self.latent_dim = run.config.latent_dim
        self.num_classes = run.num_classes if run.conditional else None
        self.images = held_out.x[:MAX_CODES]
        self.labels = None if held_out.y is None else np.asarray(held_out.y[:MAX_CODES], np.int64)
        self._lock = threading.Lock()
        cond = one_hot(self.labels, self.num_classes) if self.num_classes else None
        self.codes = encode_mean(run.encoder, self.images, cond) if len(self.images) else \
            np.zeros((0, self.latent_dim), np.float32)
        self.variances = self.codes.var(axis=0) if len(self.codes) else np.zeros(self.latent_dim, np.float32)
        self.unit_order = [int(u) for u in np.argsort(-self.variances, kind="stable")]
        if self.latent_dim == 2:  # the units themselves: no projection needed
            self.origin, self.axes = np.zeros(2, np.float32), np.eye(2, dtype=np.float32)
            self.explained = None
        else:
            self.origin, self.axes, self.explained = principal_axes(self.codes) if len(self.codes) > 1 else (
                np.zeros(self.latent_dim, np.float32), np.eye(2, self.latent_dim, dtype=np.float32), None)
        self.decode_images(np.zeros((1, self.latent_dim), np.float32), 0 if self.num_classes else None)  # compile
        self.shown = np.sort(np.random.default_rng(0).choice(len(self.codes), MAX_POINTS, replace=False)) \
            if len(self.codes) > MAX_POINTS else np.arange(len(self.codes))

    # --- what the page loads once -------------------------------------------------------------

    def info(self) -> dict:
        config = self.run.config
        view = (self.codes[self.shown] - self.origin) @ self.axes.T
        reach = np.abs(self.codes).max(axis=0) if len(self.codes) else np.zeros(self.latent_dim)
        class_names = self.run.data.get("class_names") if isinstance(self.run.data, dict) else None
        if not (isinstance(class_names, list) and len(class_names) == self.run.num_classes
                and all(isinstance(n, str) for n in class_names)):
            class_names = None
        return {
            "run": self.name,
            "arch": config.arch,
            "latent_dim": self.latent_dim,
            "image_shape": list(self.run.input_shape),
            "conditional": self.num_classes is not None,
            "num_classes": self.run.num_classes,
            "class_names": class_names,
            "held_out": len(self.codes),
            "view": "units z[0], z[1]" if self.latent_dim == 2 else "PCA of z_mean",
            "explained": None if self.explained is None else [round(float(r), 4) for r in self.explained],
            "origin": _floats(self.origin),
            "axes": [_floats(a) for a in self.axes],
            "points": [[round(float(x), 4), round(float(y), 4), None if self.labels is None else int(self.labels[i]),
                        int(i)] for (x, y), i in zip(view, self.shown)],
            "unit_order": self.unit_order[:MAX_SLIDERS],
            "unit_variance": _floats(self.variances),
            # sliders reach a little past the farthest code on each unit, at least +-3 (the prior's bulk)
            "slider_range": [min(Z_BOUND, max(3.0, float(np.ceil(r * 1.2)))) for r in reach],
            "start": _floats(np.median(self.codes, axis=0) if len(self.codes) else np.zeros(self.latent_dim)),
            "z_bound": Z_BOUND,
            "max_steps": MAX_STEPS,
        }

    # --- what each request asks for -----------------------------------------------------------

    def decode_images(self, z: np.ndarray, label: int | None) -> list[str]:
        """Decode the rows of z (one class label for all in a conditional run) to PNG data URLs."""
        cond = None if label is None else one_hot(np.full(len(z), label), self.num_classes)
        with self._lock:
            # predict_on_batch runs a compiled graph: ~1 ms for one 28x28 conv image on 2 cores,
            # against ~16 ms for latent.decode's direct (eager) call, made for big batches
            out = self.run.decoder.predict_on_batch(np.asarray(z, np.float32) if cond is None
                                                    else [np.asarray(z, np.float32), cond])
        images = np.asarray(out[0] if isinstance(out, (list, tuple)) else out, np.float32)  # gaussian-learned: means
        return [png_data_url(image) for image in images]

    def nearest(self, z: np.ndarray, label: int | None) -> Nearest | None:
        """The held-out image whose code is closest to z (of the same class in a conditional run)."""
        candidates = np.arange(len(self.codes))
        if label is not None and self.labels is not None and np.any(self.labels == label):
            candidates = candidates[self.labels == label]
        if not len(candidates):
            return None
        distances = np.sum((self.codes[candidates] - z) ** 2, axis=1)
        best = int(candidates[int(np.argmin(distances))])
        return Nearest(best, None if self.labels is None else int(self.labels[best]),
                       float(np.sqrt(distances.min())))

    def point(self, index: int) -> dict:
        """Held-out image `index`: its code, label and the image itself."""
        return {"index": index, "z": _floats(self.codes[index]),
                "label": None if self.labels is None else int(self.labels[index]),
                "image": png_data_url(self.images[index])}

    def decode_with_nearest(self, z: np.ndarray, label: int | None) -> dict:
        (image,) = self.decode_images(z[None], label)
        near = self.nearest(z, label)
        return {"image": image, "nearest": None if near is None else {
            "index": near.index, "label": near.label, "distance": round(near.distance, 4),
            "image": png_data_url(self.images[near.index])}}

    def interpolate(self, a: np.ndarray, b: np.ndarray, steps: int, label: int | None) -> dict:
        t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
        return {"images": self.decode_images((1 - t) * a + t * b, label)}


def _floats(values) -> list[float]:
    return [round(float(v), 5) for v in np.asarray(values).ravel()]
