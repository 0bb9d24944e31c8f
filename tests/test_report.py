"""The training-evolution GIF and report.html: self-contained, every picture loads, the metrics are there."""

import base64
import io
from html.parser import HTMLParser

import pytest
from PIL import Image

from genzoo.cli import main
from genzoo.errors import CheckpointError
from genzoo.viz.report import evolution_gif, write_report


class Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.links, self.tables, self.cells = [], [], [], []
        self._in_td = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a)
        for key in ("href", "src"):
            if key in a and tag != "img":
                self.links.append(a[key])
        if tag == "table":
            self.tables.append(a.get("id"))
        self._in_td = tag == "td"

    def handle_data(self, data):
        if self._in_td:
            self.cells.append(data)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    rd = tmp_path_factory.mktemp("r") / "vae"
    assert main(["train", "vae", "--steps", "60", "--sample-every", "20", "--run-dir", str(rd), "--no-progress",
                 "--set", "latent_dim=2", "--set", "hidden=[16]"]) == 0
    assert main(["eval", str(rd), "--iwae-k", "5", "--no-progress"]) == 0
    assert main(["interpolate", str(rd), "--pairs", "1", "--steps", "4"]) == 0
    return rd


def test_gif_has_one_frame_per_grid(run):
    gif = Image.open(evolution_gif(run))
    assert gif.format == "GIF" and gif.n_frames == 3  # steps 20, 40, 60


def test_report_is_self_contained_and_complete(run, capsys):
    assert main(["report", str(run)]) == 0
    text = (run / "report.html").read_text()
    p = Collect()
    p.feed(text)
    assert len(p.imgs) >= 4  # samples, evolution, curves, interpolation
    for img in p.imgs:  # every picture is inline and decodes
        assert img["src"].startswith("data:image/")
        Image.open(io.BytesIO(base64.b64decode(img["src"].split(",", 1)[1]))).load()
    assert p.links == [] and "http://" not in text and "https://" not in text  # links nothing outside itself
    assert "metrics" in p.tables and "-ELBO" in p.cells and any(c.startswith("iwae") for c in p.cells)
    assert {"evolution.gif"} <= {f.name for f in run.iterdir()}


def test_report_errors(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "not a genzoo run" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="no sample grids"):
        evolution_gif(tmp_path / "empty")
