"""Numbers that compare a set of generated images with a set of real ones, given as feature
vectors (N, d): the Fréchet distance between Gaussians fitted to each set, k-nearest-neighbour
precision and recall (Kynkäänniemi et al. 2019), their standard errors, and the pixel-PCA space
used when no classifier is available.

Pure numpy (float64 throughout): no Keras, no scipy, so it is quick to import and to test.
"""

from __future__ import annotations

import numpy as np

# Rows of query points per distance block: 1,024 x 10,000 float64 distances are 80 MB.
DISTANCE_ROWS = 1024


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and unbiased covariance (d, d) of the rows of features (N, d), N >= 2."""
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"feature_stats needs an (N, d) array with N >= 2, got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """The symmetric square root of a symmetric positive semi-definite matrix; round-off
    eigenvalues below zero are treated as zero."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Squared Fréchet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2):

        |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1^1/2 S2 S1^1/2)^1/2)

    The trace term is taken from the eigenvalues of the symmetric S1^1/2 S2 S1^1/2, which is
    exact for singular covariances (fewer samples than dimensions) where sqrtm(S1 S2) can turn
    complex through round-off.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    root1 = _psd_sqrt(s1)
    cross = root1 @ s2 @ root1
    trace_cross = np.sqrt(np.clip(np.linalg.eigvalsh((cross + cross.T) / 2), 0, None)).sum()
    return float(max(0.0, np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * trace_cross))


def frechet_distance_of_sets(real: np.ndarray, fake: np.ndarray) -> float:
    """frechet_distance of Gaussians fitted to two feature sets (N, d) and (M, d)."""
    return frechet_distance(*feature_stats(real), *feature_stats(fake))


def half_sample_se(metric, real: np.ndarray, fake: np.ndarray, *, repeats: int, seed: int) -> np.ndarray:
    """Standard errors of metric(real, fake) -> values: the spread (std) of its values over
    `repeats` seeded random halves of both sets, drawn without replacement.

    For a statistic that behaves like a mean, the variance of a half-sample value around the
    full-sample value is sigma^2/(N/2) * (1 - 1/2) = sigma^2/N, the full sample's own sampling
    variance, so no rescaling is needed. Unlike a bootstrap it repeats no point, which would
    shrink k-NN radii to zero. docs/sample-quality.md sets it beside the spread over fresh draws.
    """
    rng = np.random.default_rng([seed, 2])  # its own stream, apart from the samples' z draws
    values = [metric(real[rng.choice(len(real), len(real) // 2, replace=False)],
                     fake[rng.choice(len(fake), len(fake) // 2, replace=False)]) for _ in range(repeats)]
    return np.std(np.asarray(values, np.float64), axis=0, ddof=1)


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a_i - b_j|^2 for every pair, (len(a), len(b)), never below zero."""
    d = np.sum(a * a, 1)[:, None] + np.sum(b * b, 1)[None] - 2 * a @ b.T
    return np.maximum(d, 0)


def knn_radii(points: np.ndarray, k: int) -> np.ndarray:
    """Squared distance from each point to its k-th nearest other point of the same set."""
    points = np.asarray(points, np.float64)
    if not 1 <= k < len(points):
        raise ValueError(f"k-nearest-neighbour radii need 1 <= k < number of points, got k={k} for {len(points)}")
    # column k of each sorted row: index 0 is the point itself (distance 0), duplicates count as neighbours
    return np.concatenate([np.partition(_squared_distances(points[i:i + DISTANCE_ROWS], points), k, axis=1)[:, k]
                           for i in range(0, len(points), DISTANCE_ROWS)])


def inside_manifold(queries: np.ndarray, points: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """For each query: whether it lies in some ball |q - p_j|^2 <= radii_j around the points."""
    queries, points = np.asarray(queries, np.float64), np.asarray(points, np.float64)
    return np.concatenate([np.any(_squared_distances(queries[i:i + DISTANCE_ROWS], points) <= radii[None], axis=1)
                           for i in range(0, len(queries), DISTANCE_ROWS)])


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019): precision is the fraction of
    fake points inside the real manifold (the union of balls reaching each real point's k-th
    nearest real neighbour), recall the fraction of real points inside the fake manifold."""
    precision = inside_manifold(fake, real, knn_radii(real, k)).mean()
    recall = inside_manifold(real, fake, knn_radii(fake, k)).mean()
    return float(precision), float(recall)


def binomial_se(fraction: float, n: int) -> float:
    """Standard error of a fraction of n independent yes/no outcomes."""
    return float(np.sqrt(fraction * (1 - fraction) / n)) if n else 0.0


def pca_basis(points: np.ndarray, components: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean (D,), top principal directions (c, D)) of the rows of points (N, D), where
    c = min(components, N - 1, D): the pixel-PCA space of the no-classifier fallback."""
    x = np.asarray(points, np.float64).reshape(len(points), -1)
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    return mean, vt[:min(components, len(x) - 1, x.shape[1])]


def project(points: np.ndarray, basis: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Coordinates (N, c) of points (N, ...) in a pca_basis."""
    mean, directions = basis
    return (np.asarray(points, np.float64).reshape(len(points), -1) - mean) @ directions.T
