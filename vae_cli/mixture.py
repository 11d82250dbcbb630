"""Full-covariance Gaussian mixtures in numpy: a seeded EM fit, log-densities, sampling, and a
file format of plain arrays.

On disk a mixture is two files: NAME.npz holding the float64 arrays `weights` (K,), `means`
(K, d) and `covariances` (K, d, d), and NAME.json, its protocol (what it was fitted on, the
seed, the fit's log-likelihood) with the SHA-256 of the .npz, so a pair that does not belong
together is noticed. The .npz is read with allow_pickle=False and every array is checked
before use (shapes, finite values, weights summing to 1, positive-definite covariances).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_path, write_json
from .config import MAX_COMPONENTS

FORMAT = "vae-cli gaussian mixture 1"
ARRAYS = ("weights", "means", "covariances")
REG_COVAR = 1e-6  # added to every covariance's diagonal, as scikit-learn does: no component collapses
_LOG_2PI = math.log(2.0 * math.pi)


class MixtureFileError(ValueError):
    """A mixture file pair that cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class GaussianMixture:
    weights: np.ndarray  # (K,) float64, non-negative, sums to 1
    means: np.ndarray  # (K, d)
    covariances: np.ndarray  # (K, d, d), symmetric positive definite

    @property
    def k(self) -> int:
        return len(self.weights)

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def mean(self) -> np.ndarray:
        """E[z], (d,)."""
        return self.weights @ self.means

    def std(self) -> np.ndarray:
        """The standard deviation of each coordinate of z, (d,) (law of total variance)."""
        variance = self.weights @ (np.diagonal(self.covariances, axis1=1, axis2=2) + self.means**2) - self.mean()**2
        return np.sqrt(np.maximum(variance, 0.0))

    def log_density(self, z: np.ndarray) -> np.ndarray:
        """log p(z) of each row of z (N, d): (N,)."""
        return _logsumexp(_component_log_densities(np.asarray(z, np.float64), self) + np.log(self.weights), 1)

    def sample(self, n: int, rng: np.random.Generator, temperature: float = 1.0) -> np.ndarray:
        """n draws (n, d) float32: the component of each by its weight, then mean + T L eps with
        L the covariance's Cholesky factor and T the temperature (below 1: nearer the component
        means); the same rng state gives the same draws."""
        comps = rng.choice(self.k, size=n, p=self.weights)
        eps = rng.standard_normal((n, self.dim))
        z = np.empty((n, self.dim))
        for c in np.unique(comps):  # one product per component instead of an (n, d, d) gather
            rows = comps == c
            z[rows] = self.means[c] + temperature * eps[rows] @ np.linalg.cholesky(self.covariances[c]).T
        return z.astype(np.float32)


def from_diagonal(logits: np.ndarray, means: np.ndarray, log_vars: np.ndarray) -> GaussianMixture:
    """The mixture sum_k softmax(logits)_k N(means_k, diag(exp(log_vars_k))) (a learned prior)."""
    logits = np.asarray(logits, np.float64)
    weights = np.exp(logits - logits.max())
    variances = np.exp(np.asarray(log_vars, np.float64))
    covariances = np.einsum("kd,de->kde", variances, np.eye(variances.shape[1]))
    return GaussianMixture(weights / weights.sum(), np.asarray(means, np.float64), covariances)


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    m = np.max(a, axis=axis, keepdims=True)
    return np.squeeze(m, axis) + np.log(np.sum(np.exp(a - m), axis=axis))


def _component_log_densities(z: np.ndarray, mixture: GaussianMixture) -> np.ndarray:
    """log N(z_n; mean_k, cov_k) as (N, K), through each covariance's Cholesky factor."""
    out = np.empty((len(z), mixture.k))
    for c in range(mixture.k):
        chol = np.linalg.cholesky(mixture.covariances[c])
        whitened = np.linalg.solve(chol, (z - mixture.means[c]).T)  # (d, N): L^-1 (z - mean)
        out[:, c] = -0.5 * (mixture.dim * _LOG_2PI + np.sum(whitened**2, axis=0)) - np.sum(np.log(np.diag(chol)))
    return out


# --------------------------------------------------------------------------------------------
# fitting


@dataclass(frozen=True)
class Fit:
    mixture: GaussianMixture
    log_likelihood: float  # mean log p(z) of the fitted points, nats
    iterations: int
    converged: bool


def _kmeans_pp(z: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k starting centres (k-means++): each next one drawn with probability ~ squared distance."""
    centres = [z[rng.integers(len(z))]]
    dist = np.sum((z - centres[0]) ** 2, axis=1)
    for _ in range(1, k):
        total = dist.sum()
        index = rng.choice(len(z), p=dist / total) if total > 0 else rng.integers(len(z))
        centres.append(z[index])
        dist = np.minimum(dist, np.sum((z - z[index]) ** 2, axis=1))
    return np.array(centres)


def _kmeans(z: np.ndarray, k: int, rng: np.random.Generator, iterations: int = 50) -> np.ndarray:
    """Hard assignments (N,) of Lloyd's k-means from k-means++ centres: EM's starting point."""
    centres = _kmeans_pp(z, k, rng)
    assign = None
    for _ in range(iterations):
        new = np.argmin(np.sum(centres**2, 1)[None] - 2 * z @ centres.T, axis=1)  # |z|^2 is common to all
        if assign is not None and np.array_equal(new, assign):
            break
        assign = new
        counts = np.bincount(assign, minlength=k)
        filled = counts > 0  # an emptied centre keeps its place
        centres[filled] = (np.eye(k)[assign].T @ z)[filled] / counts[filled, None]
    return assign


def _m_step(z: np.ndarray, resp: np.ndarray) -> GaussianMixture:
    counts = resp.sum(axis=0) + 10 * np.finfo(np.float64).eps  # (K,)
    means = resp.T @ z / counts[:, None]
    covariances = np.empty((len(counts), z.shape[1], z.shape[1]))
    for c in range(len(counts)):
        diff = z - means[c]
        cov = (resp[:, c, None] * diff).T @ diff / counts[c]
        covariances[c] = 0.5 * (cov + cov.T) + REG_COVAR * np.eye(z.shape[1])  # exactly symmetric
    return GaussianMixture(counts / counts.sum(), means, covariances)


def fit(z: np.ndarray, k: int, *, seed: int = 0, max_iter: int = 100, tol: float = 1e-3) -> Fit:
    """Fit K full-covariance Gaussians to the rows of z (N, d) by EM from a k-means start.

    Stops when the mean log-likelihood gains less than `tol` nats in an iteration, or after
    max_iter iterations (scikit-learn's GaussianMixture defaults); the same z, k and seed give
    the same mixture. Time grows with N * K * d^2 per iteration: callers subsample large sets.
    """
    z = np.asarray(z, np.float64)
    if z.ndim != 2 or not len(z):
        raise ValueError(f"fit needs points as an (N, d) array, got shape {z.shape}")
    if not 1 <= k <= len(z):
        raise ValueError(f"fitting {k} components needs at least {k} points, got {len(z)}")
    if not np.all(np.isfinite(z)):
        raise ValueError("fit needs finite points")
    rng = np.random.default_rng(seed)
    mixture = _m_step(z, np.eye(k)[_kmeans(z, k, rng)])
    previous, converged, iteration = -np.inf, False, 0
    for iteration in range(1, max_iter + 1):
        weighted = _component_log_densities(z, mixture) + np.log(mixture.weights)  # (N, K)
        log_p = _logsumexp(weighted, 1)
        log_likelihood = float(log_p.mean())
        if log_likelihood - previous < tol:
            converged = True
            break
        previous = log_likelihood
        mixture = _m_step(z, np.exp(weighted - log_p[:, None]))
    else:
        log_likelihood = float(mixture.log_density(z).mean())
    return Fit(mixture, log_likelihood, iteration, converged)


# --------------------------------------------------------------------------------------------
# files


def protocol_path(npz: Path) -> Path:
    return Path(npz).with_suffix(".json")


def save(path: str | Path, mixture: GaussianMixture, protocol: dict) -> None:
    """Write PATH (.npz of the arrays) and its protocol beside it (.json), each atomically, the
    protocol last: a kill between the two leaves a protocol that no longer matches, so `load`
    refuses the pair and the mixture is fitted again."""
    path = Path(path)
    buffer = io.BytesIO()
    np.savez(buffer, **{name: getattr(mixture, name) for name in ARRAYS})
    data = buffer.getvalue()
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    write_json(protocol_path(path), {**protocol, "format": FORMAT, "k": mixture.k, "latent_dim": mixture.dim,
                                     "npz_sha256": hashlib.sha256(data).hexdigest()})


def load(path: str | Path, *, dim: int) -> tuple[GaussianMixture, dict]:
    """Read and check a pair written by `save`; MixtureFileError says what is wrong."""
    path = Path(path)
    try:
        data = path.read_bytes()
        protocol = json.loads(protocol_path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise MixtureFileError(f"{path}: cannot read it or its protocol ({type(e).__name__})") from None
    if not isinstance(protocol, dict) or protocol.get("format") != FORMAT:
        raise MixtureFileError(f"{protocol_path(path)}: not a protocol written by vae-cli ({FORMAT!r})")
    if protocol.get("npz_sha256") != hashlib.sha256(data).hexdigest():
        raise MixtureFileError(f"{path}: does not match the SHA-256 in {protocol_path(path).name}")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            if sorted(npz.files) != sorted(ARRAYS):
                raise MixtureFileError(f"{path}: expected the arrays {', '.join(ARRAYS)}, found {', '.join(npz.files)}")
            arrays = {name: npz[name] for name in ARRAYS}
    except MixtureFileError:
        raise
    except Exception as e:  # noqa: BLE001  zipfile, numpy and pickle refusals all mean the same: unusable
        raise MixtureFileError(f"{path}: not a readable array file ({type(e).__name__})") from None
    mixture = _checked(path, dim, **arrays)
    if protocol.get("k") != mixture.k or protocol.get("latent_dim") != dim:
        raise MixtureFileError(f"{protocol_path(path)}: k or latent_dim disagrees with the arrays")
    return mixture, protocol


def _checked(path: Path, dim: int, weights, means, covariances) -> GaussianMixture:
    """The arrays as a mixture, or MixtureFileError naming the first thing wrong with them."""
    k = len(weights) if weights.ndim == 1 else -1
    problem = None
    if any(a.dtype.kind != "f" for a in (weights, means, covariances)):
        problem = "arrays must hold floating-point numbers"
    elif not 1 <= k <= MAX_COMPONENTS or means.shape != (k, dim) or covariances.shape != (k, dim, dim):
        problem = (f"expected weights (K,), means (K, {dim}), covariances (K, {dim}, {dim}) with K from 1 to "
                   f"{MAX_COMPONENTS}, got {weights.shape}, {means.shape}, {covariances.shape}")
    elif not all(np.all(np.isfinite(a)) for a in (weights, means, covariances)):
        problem = "arrays hold NaN or infinite values"
    elif np.any(weights < 0) or abs(float(weights.sum()) - 1.0) > 1e-6:
        problem = "weights must be non-negative and sum to 1"
    elif not np.allclose(covariances, np.swapaxes(covariances, 1, 2), rtol=1e-9, atol=1e-12):
        problem = "covariances must be symmetric"
    else:
        try:
            np.linalg.cholesky(covariances)
        except np.linalg.LinAlgError:
            problem = "covariances must be positive definite"
    if problem:
        raise MixtureFileError(f"{path}: {problem}")
    return GaussianMixture(weights.astype(np.float64), means.astype(np.float64), covariances.astype(np.float64))
