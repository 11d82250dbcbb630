"""diagram.py: a model diagram is always a PNG, drawn by graphviz when `dot` is installed and by
vae-cli's own matplotlib renderer otherwise, with branches laid out side by side."""

import shutil

import keras
import pytest
from PIL import Image

from vae_cli import diagram
from vae_cli.config import resolve
from vae_cli.models import build_vae


def png_size(path):
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.load()
        return image.size


def leftovers(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".") or ".tmp" in p.name)


@pytest.fixture(scope="module")
def branching():
    """An encoder-like model: two inputs joined, then two heads joined again."""
    image, label = keras.Input((6,), name="image"), keras.Input((3,), name="label")
    h = keras.layers.Dense(5, name="hidden")(keras.layers.Concatenate(name="joined")([image, label]))
    mean, log_var = keras.layers.Dense(2, name="z_mean")(h), keras.layers.Dense(2, name="z_log_var")(h)
    return keras.Model([image, label], keras.layers.Add(name="z")([mean, log_var]), name="encoder")


@pytest.fixture
def no_dot(monkeypatch, tmp_path):
    """A PATH on which graphviz's `dot` cannot be found."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert shutil.which("dot") is None


def test_without_graphviz_the_own_renderer_writes_the_png(branching, no_dot, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    note = diagram.plot_architecture(branching, out / "encoder.png")
    assert note == diagram.GRAPHVIZ_HINT and "\n" not in note and "apt-get install graphviz" in note
    width, height = png_size(out / "encoder.png")
    assert 300 <= width <= 1500 and 400 <= height <= 1500  # five rows, two columns at 110 dpi
    assert sorted(p.name for p in out.iterdir()) == ["encoder.png"]  # no .txt, .dot or temp files


def test_the_hint_is_the_same_line_for_every_model_of_a_run(no_dot, tmp_path):
    models = build_vae(resolve("conv", {"conditional": True, "latent_dim": 2}), (12, 12, 1), 3)
    notes = {diagram.plot_architecture(m, tmp_path / f"{m.name}.png") for m in models}
    assert notes == {diagram.GRAPHVIZ_HINT}
    for m in models:
        assert min(png_size(tmp_path / f"{m.name}.png")) > 150
    assert leftovers(tmp_path) == []


def test_branches_are_side_by_side_and_every_edge_is_drawn(branching):
    geometry = diagram.layout(branching)
    at = {box.name: centre for box, centre in zip(geometry.boxes, geometry.centres)}
    assert at["image"][1] == at["label"][1] and at["z_mean"][1] == at["z_log_var"][1]  # same rows
    assert abs(at["z_mean"][0] - at["z_log_var"][0]) >= geometry.box_width  # apart, not overlapping
    assert abs(at["image"][0] - at["label"][0]) >= geometry.box_width
    assert at["image"][1] > at["joined"][1] > at["hidden"][1] > at["z_mean"][1] > at["z"][1]  # top to bottom
    names = [box.name for box in geometry.boxes]
    edges = {(names[a], names[b]) for a, b, _ in geometry.edges}
    assert edges == {("image", "joined"), ("label", "joined"), ("joined", "hidden"), ("hidden", "z_mean"),
                     ("hidden", "z_log_var"), ("z_mean", "z"), ("z_log_var", "z")}
    roles = {box.name: box.role for box in geometry.boxes}
    assert roles["image"] == roles["label"] == "input" and roles["z"] == "output"
    assert {box.name: box.shape for box in geometry.boxes}["joined"] == "(None, 9)"


def test_a_late_input_sits_beside_the_layer_it_joins_and_long_edges_go_around():
    """The label of a conditional conv encoder enters after the convolutions: it is drawn on the
    row of `flatten`, not at the top; the VAE's x -> loss edge passes beside, not through, the
    encoder and decoder boxes."""
    models = build_vae(resolve("conv", {"conditional": True}), (12, 12, 1), 3)
    geometry = diagram.layout(models.encoder)
    at = {box.name: centre for box, centre in zip(geometry.boxes, geometry.centres)}
    assert at["label"][1] == at["flatten"][1] < at["x"][1]
    vae = diagram.layout(models.vae)
    at = {box.name: centre for box, centre in zip(vae.boxes, vae.centres)}
    names = [box.name for box in vae.boxes]
    (path,) = [line for a, b, line in vae.edges if (names[a], names[b]) == ("x", "reconstruction")]
    for waypoint in path[1:-1]:
        for name in ("encoder", "decoder"):
            if waypoint[1] == at[name][1]:
                assert abs(waypoint[0] - at[name][0]) > vae.box_width / 2


def test_names_that_look_like_mathtext_are_drawn_as_text(no_dot, tmp_path):
    x = keras.Input((2,), name="x")
    model = keras.Model(x, keras.layers.Dense(1, name="$\\frac")(x), name="m")
    assert diagram.plot_architecture(model, tmp_path / "m.png") == diagram.GRAPHVIZ_HINT
    assert min(png_size(tmp_path / "m.png")) > 50


def test_a_sequential_model_is_a_chain():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="a"), keras.layers.Dense(2, name="b")])
    boxes, edges = diagram.model_graph(model)
    assert [b.name for b in boxes] == ["a", "b"] and edges == [(0, 1)]
    assert boxes[1].shape == "(None, 2)"


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz `dot` is not installed (CI installs it)")
def test_with_graphviz_keras_plot_model_draws_the_png(branching, tmp_path):
    pytest.importorskip("pydot")
    assert diagram.plot_architecture(branching, tmp_path / "encoder.png") is None
    assert min(png_size(tmp_path / "encoder.png")) > 50
    assert sorted(p.name for p in tmp_path.iterdir()) == ["encoder.png"]
