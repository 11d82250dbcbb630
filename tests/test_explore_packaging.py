"""A built wheel carries vae-explore: its command, the page's static files and the pretrained run."""

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_ships_the_explorer_and_the_pretrained_run(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(REPO)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("vae_cli-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = archive.read(entry_points).decode()
        for name in ("index.html", "app.js", "style.css"):
            assert archive.read(f"vae_cli/explore/static/{name}") == \
                (REPO / "vae_cli/explore/static" / name).read_bytes()
        for name in ("config.json", "vae.weights.h5", "history.csv", "metrics.json"):
            assert archive.read(f"vae_cli/pretrained/mnist/{name}") == \
                (REPO / "vae_cli/pretrained/mnist" / name).read_bytes()
    assert "vae-explore = vae_cli.cli.explore:main" in scripts
    assert {"vae_cli/explore/server.py", "vae_cli/explore/api.py", "vae_cli/explore/space.py",
            "vae_cli/cli/explore.py", "vae_cli/pretrained/__init__.py"} <= names
