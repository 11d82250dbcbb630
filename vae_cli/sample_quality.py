"""How good a run's generated images are: N decoded samples set against N held-out real images
in a classifier's feature space (vae-eval --samples N). Every number comes with its protocol.

The feature space depends on the images:
- 28x28x1 (MNIST-shaped): the shipped digit classifier (feature_net.load_digit_classifier);
- other shapes with labelled training images: a classifier trained on the run's own training
  images (feature_net.RUN_RECIPE), cached in the run directory as feature-classifier.weights.h5
  plus feature-classifier.json (its protocol, and the key it is reused under);
- otherwise: pixel-PCA space (the top principal directions of the N reference images), named so.

Numbers: the Fréchet distance between Gaussians fitted to the two feature sets (the FID formula,
in this network's features, so not comparable with published FIDs), k-NN precision and recall
(Kynkäänniemi et al. 2019), and for a conditional run the fraction of samples the classifier
assigns to the label they were drawn with.
"""

from __future__ import annotations

import json
import os
from typing import Callable, NamedTuple, Union

import numpy as np

from .atomic import write_json
from .data import HeldOut, load_dataset
from .data.spec import recorded_location
from .errors import UsageError
from .feature_net import (ARCHITECTURE, DIGIT_CLASSES, DIGIT_SHAPE, RUN_RECIPE, accuracy, build_classifier,
                          features_and_classes, load_digit_classifier, sha256_file, train_classifier)
from .latent import generate, prior_z
from .run import Run, load_held_out
from .weights import write_weights
from .sample_metrics import (binomial_se, frechet_distance_of_sets, half_sample_se, pca_basis, precision_recall,
                             project)

DEFAULT_K = 3
HALF_SAMPLES = 20  # random halves behind each standard error
PCA_COMPONENTS = 64
MIN_SAMPLES, MAX_SAMPLES = 10, 50_000  # k-NN needs N > k; P/R cost grows with N^2
RUN_CLASSIFIER_WEIGHTS = "feature-classifier.weights.h5"
RUN_CLASSIFIER_PROTOCOL = "feature-classifier.json"

# sampler: "prior", a callable (n, *, seed, temperature) -> z (n, d) with an optional
# `description` attribute, or the latent points themselves (n, d).
Sampler = Union[str, Callable[..., np.ndarray], np.ndarray]


class FeatureSpace(NamedTuple):
    embed: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]  # images -> (features, classes)
    num_classes: int | None  # classes the embedding predicts (None: it predicts none)
    protocol: dict


def _classifier_space(model, protocol: dict, num_classes: int) -> FeatureSpace:
    return FeatureSpace(lambda x: features_and_classes(model, x), num_classes, protocol)


def _run_classifier_key(run: Run) -> dict:
    """What a cached run classifier must have been trained with to be reused."""
    c = run.config
    return {"architecture": ARCHITECTURE, "dataset": c.dataset, "validation_split": c.validation_split,
            "split_seed": c.seed, "image_size": c.image_size, "channels": c.channels,
            "input_shape": list(run.input_shape), "recipe": RUN_RECIPE.to_dict()}


def _cached_run_classifier(run: Run, key: dict):
    """The cached classifier when its protocol's key and weights hash match, else None."""
    weights, meta_path = run.path / RUN_CLASSIFIER_WEIGHTS, run.path / RUN_CLASSIFIER_PROTOCOL
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("key") != key or sha256_file(weights) != meta.get("weights_sha256"):
            return None
        model = build_classifier(run.input_shape, int(meta["num_classes"]))
        model.load_weights(weights)  # arrays only; a file that does not fit fails here and is retrained
    except Exception:  # noqa: BLE001  anything unreadable is a cache miss, never an error
        return None
    return model, meta


def _training_images(data, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to `limit` labelled training images, in the fixed order of a seeded shuffle; batches
    serve in-memory and folder datasets alike."""
    xs, ys, count = [], [], 0
    for x, y in data.train_batches(512, seed=0, labels=True):
        xs.append(np.asarray(x, np.float32))
        ys.append(np.asarray(y, np.int64))
        count += len(xs[-1])
        if count >= limit:
            break
    return np.concatenate(xs)[:limit], np.concatenate(ys)[:limit]


def run_classifier_space(run: Run, log=None) -> FeatureSpace | None:
    """A classifier of the run's own labelled training images (cached in the run directory when it
    is writable), or None when its training data has no labels."""
    key = _run_classifier_key(run)
    cached = _cached_run_classifier(run, key)
    if cached is not None:
        model, meta = cached
        return _classifier_space(model, {**meta["protocol"], "cached": True}, int(meta["num_classes"]))
    c = run.config
    data = load_dataset(recorded_location(c.dataset, run.data), validation_split=c.validation_split, seed=c.seed,
                        image_size=c.image_hw, channels=c.channels)
    if data.num_classes is None:
        return None
    if log:
        log(f"training a feature classifier on this run's labelled training images ({RUN_RECIPE.epochs} epochs)")
    x, y = _training_images(data, RUN_RECIPE.max_images or data.n_train)
    num_classes = int(data.num_classes)
    model = train_classifier(x, y, num_classes, RUN_RECIPE)
    protocol = {"name": "run-classifier", "network": ARCHITECTURE,
                "features": "the 128 ReLU units before the last layer",
                "classes": f"the run's {num_classes} labels",
                "trained_on": f"{len(x):,} training images of {data.source}",
                "recipe": RUN_RECIPE.to_dict(),
                "held_out_accuracy": (accuracy(model, data.x_val, data.y_val)
                                      if data.y_val is not None and len(data.y_val) else None)}
    weights = run.path / RUN_CLASSIFIER_WEIGHTS
    if os.access(run.path, os.W_OK):
        write_weights(weights, model)
        protocol["weights"] = f"RUN/{RUN_CLASSIFIER_WEIGHTS}"
        protocol["weights_sha256"] = sha256_file(weights)
        write_json(run.path / RUN_CLASSIFIER_PROTOCOL, {"key": key, "num_classes": num_classes,
                                                        "weights_sha256": protocol["weights_sha256"],
                                                        "protocol": protocol})
    else:
        protocol["weights"] = "not cached (the run directory is not writable)"
    return _classifier_space(model, {**protocol, "cached": False}, num_classes)


def pixel_pca_space(reference: np.ndarray) -> FeatureSpace:
    """The fallback without a classifier: coordinates along the reference images' top principal
    directions."""
    basis = pca_basis(reference, PCA_COMPONENTS)
    protocol = {"name": "pixel-pca",
                "features": f"pixel-PCA space: the top {len(basis[1])} principal directions of the "
                            f"{len(reference):,} reference images' pixels (no labelled data to train a classifier)"}
    return FeatureSpace(lambda x: (project(x, basis), None), None, protocol)


def feature_space(run: Run, reference: np.ndarray, log=None) -> FeatureSpace:
    """The digit classifier for MNIST-shaped images, else the run's own classifier, else pixel PCA."""
    if tuple(run.input_shape) == DIGIT_SHAPE:
        return _classifier_space(*load_digit_classifier(), DIGIT_CLASSES)
    return run_classifier_space(run, log) or pixel_pca_space(reference)


def _latents(run: Run, n: int, sampler: Sampler, *, seed: int, temperature: float) -> tuple[np.ndarray, str]:
    """n latent points from the sampler and a one-line description of it."""
    d = run.config.latent_dim
    if isinstance(sampler, str):
        if sampler != "prior":
            raise UsageError(f"unknown sampler {sampler!r}; expected 'prior'")
        return prior_z(n, d, seed=seed, temperature=temperature), f"prior N(0, T^2 I), T={temperature:g}"
    if callable(sampler):
        z = sampler(n, seed=seed, temperature=temperature)
        name = getattr(sampler, "description", getattr(sampler, "__name__", type(sampler).__name__))
    else:
        z, name = sampler, "given latent points"
    z = np.asarray(z, np.float32)
    if z.shape != (n, d) or not np.all(np.isfinite(z)):
        raise ValueError(f"the sampler must give {n} finite latent points of dimension {d}, got shape {z.shape}")
    return z, str(name)


def _candidates(held: HeldOut, label: int | None) -> tuple[np.ndarray, np.ndarray | None]:
    if label is None:
        return held.x, held.y
    if held.y is None:
        raise UsageError("--label: the held-out images have no labels to pick that class from")
    return held.x[held.y == label], held.y[held.y == label]


def check_reference(held: HeldOut, n: int, label: int | None = None) -> None:
    """Refuse, before any work, a held-out split with fewer than n images (of class `label`)."""
    x, _ = _candidates(held, label)
    if len(x) < n:
        of = "" if label is None else f" of class {label}"
        fix = (f"use --samples {len(x):,} or fewer" if len(x) >= MIN_SAMPLES
               else "use a --dataset with more held-out images")
        raise UsageError(f"--samples {n:,}: the held-out split ({held.split}) has only {len(x):,} images{of}; {fix}")


def _reference_images(held: HeldOut, n: int, label: int | None, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """n held-out images (of class `label` when given), drawn without replacement, seeded."""
    check_reference(held, n, label)
    x, y = _candidates(held, label)
    pick = np.sort(np.random.default_rng([seed, 3]).choice(len(x), n, replace=False))
    return x[pick], None if y is None else y[pick]


def compare(real: np.ndarray, fake: np.ndarray, *, k: int = DEFAULT_K, seed: int = 0) -> dict:
    """Fréchet distance, precision and recall of two feature sets, each with its half-sample
    standard error (seeded)."""
    def numbers(real_features, fake_features):
        return (frechet_distance_of_sets(real_features, fake_features),
                *precision_recall(real_features, fake_features, k))

    errors = half_sample_se(numbers, real, fake, repeats=HALF_SAMPLES, seed=seed)
    result = {}
    for name, value, error in zip(("frechet_distance", "precision", "recall"), numbers(real, fake), errors):
        result[name], result[f"{name}_se"] = float(value), float(error)
    return result


def sample_quality(run: Run, n: int, *, reference: HeldOut | None = None, sampler: Sampler = "prior",
                   temperature: float = 1.0, seed: int = 0, label: int | None = None, k: int = DEFAULT_K,
                   log=None) -> dict:
    """Fréchet distance, precision and recall of n samples against n held-out real images
    (`reference`, default the run's own held-out split), plus label accuracy for a conditional
    run, each with a standard error, and the protocol that produced them. Seeded throughout."""
    if not MIN_SAMPLES <= n <= MAX_SAMPLES:
        raise UsageError(f"--samples: expected an integer from {MIN_SAMPLES} to {MAX_SAMPLES:,}, got {n}")
    if label is not None:
        if not run.conditional:
            raise UsageError("--label: this run is not conditional, so it cannot draw a chosen class")
        if not 0 <= label < run.num_classes:
            raise UsageError(f"--label: expected a class from 0 to {run.num_classes - 1}, got {label}")
    held = reference if reference is not None else load_held_out(run)
    real, real_y = _reference_images(held, n, label, seed)
    z, sampler_name = _latents(run, n, sampler, seed=seed, temperature=temperature)
    samples = generate(run.decoder, run.config.latent_dim, z=z, seed=seed,
                       num_classes=run.num_classes if run.conditional else None, label=label)
    fake = np.clip(samples.images, 0.0, 1.0)
    space = feature_space(run, real, log)
    real_f, real_classes = space.embed(real)
    fake_f, fake_classes = space.embed(fake)
    result = compare(real_f, fake_f, k=k, seed=seed)
    classes_fit = space.num_classes is not None and (run.num_classes or 0) <= space.num_classes
    if real_y is not None and space.num_classes is not None:
        result["reference_accuracy"] = float(np.mean(real_classes == real_y))
    if run.conditional and classes_fit:
        drawn = np.argmax(samples.labels, axis=1)
        result["label_accuracy"] = float(np.mean(fake_classes == drawn))
        result["label_accuracy_se"] = binomial_se(result["label_accuracy"], n)
    result["protocol"] = {
        "n": n, "sampler": sampler_name, "temperature": temperature, "seed": seed,
        "label": label if label is not None else ("cycling through the classes" if run.conditional else None),
        "samples": "decoder means (x_hat) clipped to [0, 1]",
        "reference": {"source": held.source, "split": held.split,
                      "selection": f"{n:,} images{'' if label is None else f' of class {label}'} drawn "
                                   f"without replacement (seed {seed})"},
        "feature_network": space.protocol,
        "frechet_distance": "squared Fréchet distance between Gaussians fitted to the two feature sets "
                            "(the FID formula in these features; not comparable with Inception FIDs)",
        "precision_recall": f"k-NN manifolds, k={k} (Kynkäänniemi et al. 2019)",
        "standard_errors": (f"*_se: the spread (std) of each number over {HALF_SAMPLES} seeded random halves of both "
                            "sets (half-sampling; label_accuracy_se: binomial, sqrt(p(1-p)/N))"),
        "reference_accuracy": "the classifier's accuracy on the reference images' own labels",
    }
    if run.conditional and not classes_fit:
        result["protocol"]["label_accuracy"] = "not measured: the feature network does not predict this run's labels"
    return result


def format_line(sq: dict) -> str:
    """The numbers and the protocol's gist, one line."""
    p = sq["protocol"]
    parts = [f"FD {sq['frechet_distance']:.2f} ± {sq['frechet_distance_se']:.2f}",
             f"precision {sq['precision']:.3f} ± {sq['precision_se']:.3f}",
             f"recall {sq['recall']:.3f} ± {sq['recall_se']:.3f}"]
    if "label_accuracy" in sq:
        parts.append(f"label accuracy {sq['label_accuracy']:.3f} ± {sq['label_accuracy_se']:.3f}")
    return (f"sample quality: {', '.join(parts)} ({p['n']:,} samples, {p['sampler']}, vs {p['reference']['split']}; "
            f"{p['feature_network']['name']} features; {p['precision_recall']})")
