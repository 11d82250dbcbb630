"""The explorer's JSON API: each request's values checked before any model sees them.

    GET  /api/info                   the run, its scatter points, unit order, slider ranges, bounds
    GET  /api/point?i=N              held-out image N (an index from info's points): z, label, image
    POST /api/decode       {"z": [...], "label": K|null}              -> {"image", "nearest"}
    POST /api/interpolate  {"a": [...], "b": [...], "steps": n, "label": K|null} -> {"images"}

A request that breaks a rule gets a 4xx answer {"error": "one line"}: unknown fields, a z of the
wrong length, values that are not finite numbers within +-Z_BOUND, a label outside the run's
classes (or any label for a plain VAE), steps outside 2..MAX_STEPS.
"""

from __future__ import annotations

import json
import math
from urllib.parse import parse_qs

import numpy as np

from .space import MAX_STEPS, Z_BOUND, LatentSpace

MAX_BODY = 64 * 1024  # bytes: a 4096-unit z written out in full is about 90 KB; no page request nears this


class RequestError(Exception):
    """A request the API refuses: the HTTP status and a one-line reason."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def parse_body(raw: bytes) -> dict:
    """The request body as a JSON object (NaN and Infinity are not JSON and are refused)."""
    def no_constant(name):
        raise ValueError(f"{name} is not a number JSON allows")
    try:
        body = json.loads(raw, parse_constant=no_constant)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise RequestError(400, f"the body is not valid JSON ({str(e).splitlines()[0][:120]})") from None
    if not isinstance(body, dict):
        raise RequestError(400, "the body must be a JSON object")
    return body


def _fields(body: dict, required: set[str], optional: set[str] = frozenset()) -> None:
    unknown = sorted(set(body) - required - optional)
    if unknown:
        raise RequestError(400, f"unknown field {unknown[0]!r}; expected {sorted(required | optional)}")
    missing = sorted(required - set(body))
    if missing:
        raise RequestError(400, f"missing field {missing[0]!r}")


def _latent(value, name: str, space: LatentSpace) -> np.ndarray:
    if not isinstance(value, list) or len(value) != space.latent_dim:
        got = f"{len(value)} values" if isinstance(value, list) else type(value).__name__
        raise RequestError(400, f"{name} must be a list of {space.latent_dim} numbers (the run's latent_dim), "
                                f"got {got}")
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise RequestError(400, f"{name} holds {type(v).__name__} values; expected numbers")
        if not (math.isfinite(v) if isinstance(v, float) else True) or not -Z_BOUND <= v <= Z_BOUND:
            raise RequestError(400, f"{name} values must be finite numbers within +-{Z_BOUND:g}")
    return np.asarray(value, np.float32)


def _label(body: dict, space: LatentSpace) -> int | None:
    label = body.get("label")
    if space.num_classes is None:
        if label is not None:
            raise RequestError(400, "this run is not conditional: label must be null or left out")
        return None
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < space.num_classes:
        raise RequestError(400, f"this conditional run needs a label from 0 to {space.num_classes - 1}, "
                                f"got {json.dumps(label)[:40]}")
    return label


def decode(space: LatentSpace, body: dict) -> dict:
    _fields(body, {"z"}, {"label"})
    return space.decode_with_nearest(_latent(body["z"], "z", space), _label(body, space))


def interpolate(space: LatentSpace, body: dict) -> dict:
    _fields(body, {"a", "b", "steps"}, {"label"})
    steps = body["steps"]
    if isinstance(steps, bool) or not isinstance(steps, int) or not 2 <= steps <= MAX_STEPS:
        raise RequestError(400, f"steps must be an integer from 2 to {MAX_STEPS}")
    return space.interpolate(_latent(body["a"], "a", space), _latent(body["b"], "b", space), steps,
                             _label(body, space))


def point(space: LatentSpace, query: str) -> dict:
    try:
        params = parse_qs(query, keep_blank_values=True, strict_parsing=True, max_num_fields=4)
    except ValueError:
        raise RequestError(400, "the query must be i=N") from None
    if set(params) != {"i"} or len(params["i"]) != 1:
        raise RequestError(400, "the query must be exactly i=N (a held-out image index)")
    text = params["i"][0]
    if not (text.isascii() and text.isdigit()) or len(text) > 9 or int(text) >= len(space.codes):
        raise RequestError(400, f"i must be an integer from 0 to {len(space.codes) - 1}")
    return space.point(int(text))


POST_ROUTES = {"/api/decode": decode, "/api/interpolate": interpolate}
