"""Architecture diagrams: one PNG per model, drawn by graphviz when it is installed, else here.

With graphviz's `dot` on PATH, Keras's own `plot_model` draws the diagram. Without it, `draw_model`
draws the same picture with matplotlib: one box per layer (name, class, output shape), top to
bottom in the order data flows, an arrow per connection, and parallel paths side by side (the
z_mean and z_log_var heads, the label input of a conditional model). The layout is the classic
layered one: layers are put on rows by their longest path from an input, edges that skip rows
get invisible waypoints, rows are ordered to reduce crossings and boxes are pulled under their
inputs. The graph comes from `model.get_config()`, the public JSON that also saves the model.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

import numpy as np

from . import plots  # also selects matplotlib's file-only backend
from .atomic import atomic_path

GRAPHVIZ_HINT = ("model diagrams (*.png) drawn by vae-cli's own renderer; install graphviz "
                 "(`apt-get install graphviz` or `brew install graphviz`) for Keras's plot_model diagrams")
ROW_IN, BOX_H_IN = 1.0, 0.56  # row pitch and box height, inches
WAYPOINT_W_IN, GAP_IN = 0.15, 0.3  # width an edge passing a row takes, space between neighbours
CHAR_IN = 0.08  # width of one character at the 9-point box font (bold DejaVu Sans, ~0.64 em)
MAX_LABEL = 48  # characters; longer names and shapes are shortened with an ellipsis
SWEEPS = 8


def plot_architecture(model, path) -> str | None:
    """The model's diagram as a PNG at `path`; None when graphviz drew it, else one line saying
    how to get graphviz's version (the same line for every model, so a run prints it once)."""
    import keras

    reason = GRAPHVIZ_HINT
    if shutil.which("dot"):
        # graphviz 2.43's orthogonal router aborts on some branching graphs (a decoder with two
        # outputs); curved edges always lay out
        for splines in ("ortho", "spline"):
            try:
                with atomic_path(path) as tmp:
                    keras.utils.plot_model(model, to_file=str(tmp), show_shapes=True, show_layer_names=True,
                                           expand_nested=False, dpi=plots.DPI, splines=splines)
                return None
            except Exception as err:  # a broken graphviz or pydot must not stop a finished run
                reason = (f"graphviz could not draw the model diagrams ({type(err).__name__}: "
                          f"{' '.join(str(err).split())[:200]}); vae-cli's own renderer drew them")
    draw_model(model, path)
    return reason


# ---------------------------------------------------------------------------- the graph

@dataclass(frozen=True)
class Layer:
    """One box of the diagram."""

    name: str
    kind: str  # the layer's class name
    shape: str  # its output shape(s), as Keras prints them
    role: str  # "input", "output" or "layer"


def _short(text: str, most: int = MAX_LABEL) -> str:
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return text if len(text) <= most else text[: most - 1] + "\u2026"


def _shape_text(layer) -> str:
    import keras

    try:
        shapes = [tuple(t.shape) for t in keras.tree.flatten(layer.output)]
    except (AttributeError, ValueError):  # a layer that was never called, or called several times
        return "?"
    texts = [str(s).replace(",)", ")") for s in shapes]
    if len(texts) > 1 and len(set(texts)) == 1:
        return f"{len(texts)} x {texts[0]}"
    return ", ".join(texts)


def _tensor_sources(value, found: list[str]) -> list[str]:
    """Names of the layers whose output tensors appear in one call's serialised arguments."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            history = value.get("config", {}).get("keras_history")
            if history:
                found.append(history[0])
        else:
            for item in value.values():
                _tensor_sources(item, found)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _tensor_sources(item, found)
    return found


def _graph_config(model) -> dict:
    """The model's config, holding its layer graph when it has one. A functional model built by a
    subclass (models.VAE) reports only its own constructor arguments, so its graph is read from a
    plain functional model over the same inputs and outputs (sharing the layers, copying nothing)."""
    try:
        config = model.get_config() or {}
    except Exception:  # a subclassed model need not be serialisable
        config = {}
    if not isinstance(config, dict):
        return {}
    if not isinstance(config.get("layers"), list) and getattr(model, "inputs", None) and getattr(model, "outputs", None):
        import keras  # the model exists, so Keras is already imported

        try:
            config = keras.Model(model.inputs, model.outputs, name=model.name).get_config()
        except Exception:  # not a graph of layers after all: one box
            pass
    return config


def model_graph(model) -> tuple[list[Layer], list[tuple[int, int]]]:
    """(layers, edges (from index, to index)) of a functional or sequential model; a model of
    any other kind is one box. Nested models stay one box each, as in Keras's diagrams."""
    layers = list(getattr(model, "layers", []))
    specs = _graph_config(model).get("layers")
    if not layers or not isinstance(specs, list):
        return [Layer(model.name, type(model).__name__, _shape_text(model), "layer")], []
    index = {layer.name: i for i, layer in enumerate(layers)}
    edges: list[tuple[int, int]] = []
    if any("inbound_nodes" in spec for spec in specs):  # functional
        for spec in specs:
            child = index.get(spec.get("name"))
            for parent in _tensor_sources(spec.get("inbound_nodes", []), []):
                if child is not None and parent in index and (index[parent], child) not in edges:
                    edges.append((index[parent], child))
    else:  # sequential: a chain
        edges = [(i, i + 1) for i in range(len(layers) - 1)]
    has_parent = {b for _, b in edges}
    has_child = {a for a, _ in edges}
    boxes = []
    for i, layer in enumerate(layers):
        kind = type(layer).__name__
        role = ("input" if kind == "InputLayer" or i not in has_parent
                else "output" if i not in has_child else "layer")
        boxes.append(Layer(layer.name, kind, _shape_text(layer), role))
    return boxes, edges


# ---------------------------------------------------------------------------- the layout

@dataclass
class Layout:
    """Where everything goes, in inches: box centres, each edge as a polyline of points, sizes."""

    boxes: list[Layer]
    centres: list[tuple[float, float]]  # per box, y grows upwards (row 0 at the top)
    edges: list[tuple[int, int, list[tuple[float, float]]]]  # (from box, to box, centres it passes)
    box_width: float
    width: float
    height: float


def _ranks(n: int, edges: list[tuple[int, int]]) -> list[int]:
    """Row of each node: its longest path from a source; a source feeding a later row (a label
    input) moves down to sit just above its first consumer."""
    parents: list[list[int]] = [[] for _ in range(n)]
    children: list[list[int]] = [[] for _ in range(n)]
    for a, b in edges:
        parents[b].append(a)
        children[a].append(b)
    rank = [0] * n
    for node in _topological(n, parents, children):
        rank[node] = max((rank[p] + 1 for p in parents[node]), default=0)
    for node in range(n):
        if not parents[node] and children[node]:
            rank[node] = min(rank[c] for c in children[node]) - 1
    return rank


def _topological(n: int, parents, children) -> list[int]:
    waiting = [len(p) for p in parents]
    ready = [i for i in range(n) if not waiting[i]]
    order = []
    while ready:
        node = ready.pop(0)
        order.append(node)
        for c in children[node]:
            waiting[c] -= 1
            if not waiting[c]:
                ready.append(c)
    return order + [i for i in range(n) if i not in order]  # a cycle cannot occur; be safe anyway


def _isotonic(desired: list[float], widths: list[float]) -> list[float]:
    """Positions closest (least squares) to `desired` that keep the order and each neighbour
    pair (wa + wb) / 2 + GAP_IN apart: pool-adjacent-violators on the gap-free coordinates."""
    offsets = np.concatenate([[0.0], np.cumsum([(a + b) / 2 + GAP_IN for a, b in zip(widths, widths[1:])])])
    blocks: list[list[float]] = []  # [mean, count]
    for value in np.asarray(desired) - offsets:
        blocks.append([value, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            (m1, c1), (m2, c2) = blocks.pop(-2), blocks.pop()
            blocks.append([(m1 * c1 + m2 * c2) / (c1 + c2), c1 + c2])
    flat = [m for m, c in blocks for _ in range(c)]
    return list(np.asarray(flat) + offsets)


def _crossings(rows, position, links) -> int:
    count = 0
    for upper, lower in zip(rows, rows[1:]):
        between = [(position[a], position[b]) for a in upper for b in links[a] if b in lower]
        for i, (a1, b1) in enumerate(between):
            count += sum((a1 - a2) * (b1 - b2) < 0 for a2, b2 in between[i + 1:])
    return count


def layout(model) -> Layout:
    """The diagram's geometry (see the module docstring); `draw_model` draws it."""
    boxes, edges = model_graph(model)
    n = len(boxes)
    rank = _ranks(n, edges)
    # chains of waypoints for edges that skip rows; node ids >= n are waypoints
    links: dict[int, list[int]] = {i: [] for i in range(n)}
    chains = []
    for a, b in edges:
        chain = [a]
        for r in range(rank[a] + 1, rank[b]):
            links[len(rank)] = []
            rank.append(r)
            chain.append(len(rank) - 1)
        chain.append(b)
        for u, v in zip(chain, chain[1:]):
            links[u].append(v)
        chains.append(chain)
    back: dict[int, list[int]] = {i: [] for i in links}
    for u, vs in links.items():
        for v in vs:
            back[v].append(u)
    rows = [[i for i in range(len(rank)) if rank[i] == r] for r in range(max(rank) + 1)]
    # order each row by the mean position of its neighbours, sweeping down and up; keep the best
    position = {node: i for row in rows for i, node in enumerate(row)}
    best = ([list(row) for row in rows], _crossings(rows, position, links))
    for sweep in range(SWEEPS):
        down = sweep % 2 == 0
        near, other = (back, links) if down else (links, back)
        for row in (rows[1:] if down else rows[-2::-1]):
            # a node with no neighbour on the side swept from (an input) follows its other side
            row.sort(key=lambda node: (np.mean([position[m] for m in near[node] or other[node]])
                                       if near[node] or other[node] else position[node], position[node]))
            position.update({node: i for i, node in enumerate(row)})
        count = _crossings(rows, position, links)
        if count < best[1]:
            best = ([list(row) for row in rows], count)
    rows = best[0]
    # x: pack each row, then pull nodes under (over) their neighbours, alternating directions
    box_w = max(CHAR_IN * max(len(_short(f"{b.name} ({b.kind})")), len(_short(b.shape))) + 0.35
                for b in boxes)
    width_of = [box_w if i < n else WAYPOINT_W_IN for i in range(len(rank))]
    x: dict[int, float] = {}
    for row in rows:
        widths = [width_of[i] for i in row]
        x.update(zip(row, _isotonic([0.0] * len(row), widths)))
        centre = (x[row[0]] + x[row[-1]]) / 2
        x.update({i: x[i] - centre for i in row})
    for sweep in range(SWEEPS):
        down = sweep % 2 == 0
        for row in (rows[1:] if down else rows[-2::-1]):
            near = back if down else links
            desired = [np.mean([x[m] for m in near[i]]) if near[i] else x[i] for i in row]
            x.update(zip(row, _isotonic(desired, [width_of[i] for i in row])))
    left = min(x[i] - width_of[i] / 2 for i in x) - 0.2
    right = max(x[i] + width_of[i] / 2 for i in x) + 0.2
    height = len(rows) * ROW_IN + 0.3
    y = {i: height - 0.15 - (rank[i] + 0.5) * ROW_IN for i in x}
    centres = [(x[i] - left, y[i]) for i in range(n)]
    polylines = [(chain[0], chain[-1], [(x[i] - left, y[i]) for i in chain]) for chain in chains]
    return Layout(boxes, centres, polylines, box_w, right - left, height)


# ---------------------------------------------------------------------------- drawing

_FILL = {"input": "#dbe9f6", "output": "#fde5cc", "layer": "#f2f2f2"}


def _escape(text: str) -> str:
    return text.replace("$", r"\$")  # a layer name must never be read as mathtext


def draw_model(model, path) -> None:
    """Draw `layout(model)` with matplotlib and write it, atomically, as a PNG at `path`."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    geometry = layout(model)
    fig = plt.figure(figsize=(geometry.width, geometry.height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, geometry.width)
    ax.set_ylim(0, geometry.height)
    ax.set_axis_off()
    half_w, half_h = geometry.box_width / 2, BOX_H_IN / 2
    # where each edge leaves and enters a box: spread along its bottom and top edges, so the
    # several inputs of a Concatenate or a Sampling layer arrive as separate arrows
    ports: dict[tuple[str, int], float] = {}
    for end, box_of, far in (("start", 0, 1), ("end", 1, -2)):
        for box in range(len(geometry.boxes)):
            here = sorted((k for k, edge in enumerate(geometry.edges) if edge[box_of] == box),
                          key=lambda k: geometry.edges[k][2][far][0])  # by where the edge goes
            for j, k in enumerate(here):
                ports[end, k] = (j + 1) / (len(here) + 1) * 2 - 1  # -1..1 across the box
    for k, (_, _, line) in enumerate(geometry.edges):
        (x0, y0), (x1, y1) = line[0], line[-1]
        points = ([(x0 + ports["start", k] * half_w * 0.6, y0 - half_h)]
                  + [(px, py + dy) for px, py in line[1:-1] for dy in (half_h, -half_h)]
                  + [(x1 + ports["end", k] * half_w * 0.6, y1 + half_h)])
        if len(points) > 2:
            xs, ys = zip(*points[:-1])
            ax.plot(xs, ys, color="#555555", linewidth=1.1, solid_capstyle="round")
        ax.add_patch(FancyArrowPatch(points[-2], points[-1], arrowstyle="-|>", mutation_scale=11,
                                     color="#555555", linewidth=1.1, shrinkA=0, shrinkB=0))
    for box, (cx, cy) in zip(geometry.boxes, geometry.centres):
        ax.add_patch(FancyBboxPatch((cx - half_w, cy - half_h), 2 * half_w, 2 * half_h,
                                    boxstyle="round,pad=0,rounding_size=0.06", facecolor=_FILL[box.role],
                                    edgecolor="#333333", linewidth=1.0))
        ax.text(cx, cy + 0.1, _escape(_short(f"{box.name} ({box.kind})")), ha="center", va="center",
                fontsize=9, fontweight="bold")
        ax.text(cx, cy - 0.12, _escape(_short(box.shape)), ha="center", va="center", fontsize=8.5,
                color="#333333", family="monospace")
    plots.save_figure(fig, path, tight=False)
