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


def test_gif_of_many_grids_is_evenly_subsampled(run, tmp_path, monkeypatch):
    """Every frame of a long run (5,000 grids) was held in memory at once: gigabytes."""
    import shutil

    import genzoo.viz.report as report

    rd = tmp_path / "run"
    shutil.copytree(run, rd)
    for i in range(1, 8):  # 3 + 7 grids, of distinct content so that none merge
        im = Image.new("L", (8, 8), 30 * i)
        im.save(rd / "samples" / f"step-{100 + i:08d}.png")
    monkeypatch.setattr(report, "MAX_GIF_FRAMES", 4)
    gif = Image.open(io.BytesIO(report._gif(rd)))
    assert gif.n_frames == 4
    write_report(rd)
    assert "Training evolution (4 of 10 grids from the same noise)" in (rd / "report.html").read_text()
    monkeypatch.setattr(report, "MAX_GIF_FRAMES", 200)  # a pixel budget of 3 frames of the largest grid
    monkeypatch.setattr(report, "MAX_GIF_PIXELS", 3 * max(w * h for w, h in (Image.open(p).size for p in
                                                                             (rd / "samples").glob("step-*.png"))))
    assert Image.open(io.BytesIO(report._gif(rd))).n_frames == 3
    write_report(rd)
    assert "Training evolution (3 of 10 grids from the same noise)" in (rd / "report.html").read_text()


def test_a_sample_grid_of_more_pixels_than_a_gif_takes_is_refused_before_its_pixels_are_decoded(tmp_path):
    """A foreign run's 1-bit PNG of 9,400 pixels a side is 32 KB on disk and 265 MB decoded: 20 of them took 8.4 GB
    and 95 s of `genzoo report` (audit a137 F4)."""
    from PIL import Image

    import genzoo.viz.report as report

    (tmp_path / "samples").mkdir()
    Image.new("L", (8, 8), 0).save(tmp_path / "samples" / "step-00000001.png")
    Image.new("1", (9400, 9400), 1).save(tmp_path / "samples" / "step-00000002.png")
    decoded = []
    real = Image.Image.convert
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Image.Image, "convert", lambda im, *a, **k: decoded.append(im.size) or real(im, *a, **k))
        with pytest.raises(CheckpointError, match=r"^sample grid .*step-00000002.png is 9400 x 9400 pixels, more than "
                                                  r"the 50,000,000 a GIF takes: remove it or train again$"):
            report._gif(tmp_path)
    assert decoded == []


def test_gif_frames_of_other_sizes_are_padded_not_resized(tmp_path):
    """A 2-D run's scatters differ by a few pixels: they were resized to the last one's size, which changed
    their scale from frame to frame."""
    import genzoo.viz.report as report

    (tmp_path / "samples").mkdir()
    Image.new("RGB", (40, 30), (200, 0, 0)).save(tmp_path / "samples" / "step-00000010.png")
    Image.new("RGB", (36, 34), (0, 0, 200)).save(tmp_path / "samples" / "step-00000020.png")
    gif = Image.open(io.BytesIO(report._gif(tmp_path)))
    assert gif.size == (40, 34) and gif.n_frames == 2
    first = gif.convert("RGB")
    red = [first.getpixel((0, y))[2] < 60 for y in range(34)]
    assert red == [False] * 2 + [True] * 30 + [False] * 2  # 30 px tall in 34, at its full 40 px width
    gif.seek(1)
    second = gif.convert("RGB")
    blue = [second.getpixel((x, 0))[0] < 60 for x in range(40)]
    assert blue == [False] * 2 + [True] * 36 + [False] * 2  # 36 px wide in 40: two white columns each side


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
    (tmp_path / "other").mkdir()  # a config.json of some other program, with nothing of a run beside it
    (tmp_path / "other" / "config.json").write_text('{"model": "x"}')
    assert main(["report", str(tmp_path / "other")]) == 2
    assert "not a genzoo run" in capsys.readouterr().err and not (tmp_path / "other" / "report.html").exists()
    with pytest.raises(CheckpointError, match="no sample grids"):
        evolution_gif(tmp_path / "empty")


def test_a_report_says_when_eval_json_scored_other_weights(tmp_path, capsys):
    """After train --resume the report showed the old eval.json's figures as the run's, beside the new step."""
    rd = str(tmp_path / "gmm")
    assert main(["train", "gmm", "--data", "ring", "--steps", "4", "--run-dir", rd, "--no-progress"]) == 0
    assert main(["eval", rd, "--metrics", "nll", "--no-progress"]) == 0
    assert main(["report", rd]) == 0
    assert "out of date" not in (tmp_path / "gmm" / "report.html").read_text()
    import json
    import shutil

    shutil.copytree(rd, tmp_path / "copy", copy_function=shutil.copy)  # new file times, the same weights
    assert main(["report", str(tmp_path / "copy")]) == 0
    assert "out of date" not in (tmp_path / "copy" / "report.html").read_text()
    result = json.loads((tmp_path / "copy" / "eval.json").read_text())
    (tmp_path / "copy" / "eval.json").write_text(json.dumps({**result, "asked": {**result["asked"], "metrics_version": 1}}))
    assert main(["report", str(tmp_path / "copy")]) == 0
    assert "computed by an older genzoo, whose metrics have changed since" in (tmp_path / "copy" / "report.html").read_text()
    assert main(["sample", rd, "-n", "50"]) == 0  # samples.png of these weights: no note
    assert main(["report", rd]) == 0
    assert "Made from other weights" not in (tmp_path / "gmm" / "report.html").read_text()
    assert main(["train", "--resume", "--run-dir", rd, "--steps", "8", "--no-progress"]) == 0
    assert main(["report", rd]) == 0
    text = (tmp_path / "gmm" / "report.html").read_text()
    assert "These metrics may be out of date: the run's weights have changed since they were computed" in text
    # the advice repeats eval's flags: a plain `genzoo eval` would replace the nll evaluation by the default one
    assert f"Run <code>genzoo eval --metrics nll {rd}</code> again." in text
    # the pictures of genzoo sample / interpolate / inpaint were embedded as the run's without a word
    assert f"Made from other weights than the run's: run <code>genzoo sample {rd} -n 50</code> again." in text
    assert main(["sample", rd, "-n", "50"]) == 0
    assert main(["report", rd]) == 0
    assert "Made from other weights" not in (tmp_path / "gmm" / "report.html").read_text()


def test_loss_curves_pair_only_terms_that_are_one_quantity(tmp_path, capsys):
    """M2's valid_loss (U(x) alone) was drawn as the 'valid' curve of its training loss (L + U + alpha CE), a third
    of it; a metrics.jsonl of validation terms only was 'a bug in genzoo'."""
    from genzoo.viz.report import _family, _panels

    assert _panels(["loss", "valid_loss"]) == [("loss", "valid_loss")]
    assert _panels(["loss", "unlabelled", "valid_loss", "valid_unlabelled"], same_loss=False) == [
        ("loss", None), ("unlabelled", "valid_unlabelled"), ("valid_loss", None)]
    assert not _family("ssvae").valid_loss_is_training_loss and _family("vae").valid_loss_is_training_loss
    assert _family("not-a-model").valid_loss_is_training_loss
    rd = tmp_path / "g"
    assert main(["train", "gmm", "--data", "ring", "--steps", "2", "--run-dir", str(rd), "--no-progress"]) == 0
    (rd / "metrics.jsonl").write_text('{"step": 1, "valid_loss": 1.5}\n{"step": 2, "valid_loss": 1.2}\n')
    assert main(["report", str(rd)]) == 0 and "Loss curves" in (rd / "report.html").read_text()


def test_modes_rows_give_the_reverse_kl():
    from genzoo.viz.report import _metrics_table

    table = _metrics_table({"split": "test", "metrics": ["modes"],
                            "modes": {"modes": 7, "n_modes": 8, "high_quality": 0.9, "reverse_kl": 0.123, "counts": []}})
    assert "7/8" in table and "<td>0.123</td>" in table


def test_stray_and_corrupt_sample_files(run, tmp_path, capsys):
    """A copied picture beside the grids was an 'unexpected ValueError' (exit 1); a corrupt grid too."""
    import shutil

    rd = tmp_path / "run"
    shutil.copytree(run, rd)
    shutil.copy(rd / "samples" / "step-00000060.png", rd / "samples" / "step-final.png")
    shutil.copy(rd / "samples" / "step-00000020.png", rd / "samples" / "step-100.png")  # steps sort as numbers
    assert Image.open(evolution_gif(rd)).n_frames == 4
    assert main(["report", str(rd)]) == 0
    assert "Samples at step 100" in (rd / "report.html").read_text()
    (rd / "samples" / "step-00000040.png").write_text("x")
    assert main(["report", str(rd)]) == 2
    assert "step-00000040.png cannot be read" in capsys.readouterr().err


def test_report_renders_in_headless_chromium(run, tmp_path):
    """Open report.html in headless Chromium: every picture loads, the metrics table is there, nothing outside
    the file is fetched, and the screenshot is a page with content. `.ci/run` installs Debian's chromium."""
    import shutil

    import numpy as np
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "this test needs headless Chromium: apt-get install chromium (as .ci/run does)"
    assert main(["report", str(run)]) == 0
    url = (run / "report.html").resolve().as_uri()
    requests = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            page.goto(url, wait_until="load")
            loaded = page.evaluate("Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)")
            rows = page.evaluate("document.querySelectorAll('table#metrics tr').length")
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert len(loaded) >= 4 and all(loaded), loaded  # samples, evolution, curves, interpolation: all decoded
    assert rows >= 3  # a header and the metrics
    assert all(u == url or u.startswith("data:") for u in requests), requests  # nothing outside the file
    shot = np.asarray(Image.open(tmp_path / "report.png").convert("L"))
    assert shot.shape[0] >= 900 and shot.std() > 10  # a rendered page, not a blank one


def test_a_picture_of_another_runs_weights_is_noted_and_a_damaged_record_is_no_error(tmp_path, capsys):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    for rd, seed in ((a, "0"), (b, "1")):
        assert main(["train", "gmm", "--data", "ring", "--steps", "3", "--seed", seed, "--run-dir", rd, "--no-progress"]) == 0
    assert main(["sample", a, "-n", "20", "-o", str(tmp_path / "b" / "samples.png")]) == 0  # a's samples in b
    assert main(["report", b]) == 0
    assert "Made from other weights than the run's: run <code>genzoo sample" in (tmp_path / "b" / "report.html").read_text()
    (tmp_path / "b" / "pictures.json").write_text("{not json")  # only a note rides on it
    assert main(["report", b]) == 0
    assert "Made from other weights" not in (tmp_path / "b" / "report.html").read_text()



def test_the_metrics_table_says_what_it_scored(run):
    """A 100-example smoke evaluation looked like a full one: the table gave no split, n or sample count."""
    import json

    from genzoo.viz.report import _metrics_table

    result = json.loads((run / "eval.json").read_text())
    n = result["likelihood"]["n"]
    assert f"Scored on the test split of digits; likelihoods on {n:,} examples." in _metrics_table(result)


def test_the_metrics_table_says_the_images_were_binarized():
    """Feature metrics against the binarized test draw (``real_binarized``) were reported as "against N images",
    where `genzoo eval` prints "binarized test images": the figures are not comparable with grey ones."""
    from genzoo.viz.report import _metrics_table

    feats = {"fid": 3.0, "n_real": 300, "n_fake": 1000, "class_histogram": [0.1] * 10, "classifier": "digits", "classifier_accuracy": 0.99}
    result = {"split": "test", "metrics": ["fid"], "n_samples": 1000, "features": feats}
    assert "1,000 samples against 300 images." in _metrics_table(result)
    result["features"] = {**feats, "real_binarized": True}
    assert "1,000 samples against 300 binarized images." in _metrics_table(result)


def test_a_run_folder_whose_name_is_not_utf8_stays_usable(tmp_path, capsys):
    """A run in a folder named in Latin-1 trained, then every command called its weights "corrupt" (safetensors
    refuses such a path) and `report` failed to encode the name, "a bug in genzoo"."""
    import html
    import os
    import shlex
    import subprocess
    import sys

    rd = tmp_path / os.fsdecode(b"t\xe9 x")  # (on Linux: any bytes make a name)
    # in a process of its own: its stderr prints such a name escaped, where pytest's capture refuses it
    script = ("import sys; from genzoo.cli import main; rd = sys.argv[1]; sys.exit(max(main(a) for a in ("
              "['train', 'vae', '--steps', '4', '--set', 'data.n=64', '--run-dir', rd, '--no-progress'], "
              "['train', '--resume', '--run-dir', rd, '--steps', '6', '--no-progress'], "
              f"['sample', rd, '-n', '4', '-o', {str(tmp_path / 's.png')!r}], ['report', rd])))")
    proc = subprocess.run([sys.executable, "-c", script, os.fsencode(rd)], capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    page = (rd / "report.html").read_bytes()
    assert b"t\xe9 x" in page  # the folder's own bytes
    assert html.escape(shlex.quote(str(rd))).encode("utf-8", "surrogateescape") in page  # a command that pastes back


def test_the_gmm_loss_curves_count_em_iterations(tmp_path, monkeypatch):
    """The GMM's curves said "step" for what is one EM iteration over the whole set."""
    import genzoo.viz.report as report

    labels = []
    real = report._curves
    monkeypatch.setattr(report, "_curves", lambda run_dir, same, step="step": labels.append(step) or real(run_dir, same, step))
    for name in ("gmm", "vae"):
        rd = tmp_path / name
        assert main(["train", name, "--data", "ring", "--steps", "2", "--set", "log_every=1", "--run-dir", str(rd),
                     "--no-progress"] + (["--set", "likelihood=gaussian"] if name == "vae" else [])) == 0
        assert main(["report", str(rd)]) == 0
    assert labels == ["EM iteration", "step"]


def test_loss_panels_wrap_into_rows_of_four(tmp_path):
    """Every logged term was a panel of one row: M2's nine made a picture 29 inches wide."""
    import json

    from genzoo.viz.report import _curves

    terms = {f"term{i}": float(i) for i in range(9)}
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps({"step": s, **terms}) + "\n" for s in (1, 2)))
    w, h = Image.open(io.BytesIO(_curves(tmp_path))).size
    assert w < 4.5 * 3.2 * 90 and h > 2.5 * 2.6 * 90  # 4 columns, 3 rows (at 90 dpi)


def test_a_density_picture_of_other_weights_is_never_shown_as_the_runs(tmp_path, monkeypatch):
    """A resumed session stopped after a checkpoint (Ctrl-C, SIGTERM, divergence) left the previous session's
    density.png, and the report showed it beside the newer samples without a word."""
    import shutil

    from genzoo.train.callbacks import Checkpoint

    rd = tmp_path / "my run"
    assert main(["train", "gmm", "--data", "ring", "--steps", "4", "--set", "data.n=500", "--run-dir", str(rd),
                 "--no-progress"]) == 0
    assert main(["report", str(rd)]) == 0
    assert "Density (model beside truth)" in (text := (rd / "report.html").read_text()) and "other weights" not in text
    shutil.copy(rd / "density.png", tmp_path / "density-4.png")
    write = Checkpoint.write

    def stop_at_6(self, state):
        write(self, state)
        if state.step == 6:
            raise KeyboardInterrupt

    monkeypatch.setattr(Checkpoint, "write", stop_at_6)
    assert main(["train", "--resume", "--run-dir", str(rd), "--steps", "100", "--checkpoint-every", "2",
                 "--no-progress"]) == 130
    assert main(["report", str(rd)]) == 0
    assert "Density (model beside truth)" not in (rd / "report.html").read_text()  # the step-4 picture went
    shutil.copy(tmp_path / "density-4.png", rd / "density.png")  # put back: pictures.json says whose weights
    assert main(["report", str(rd)]) == 0
    assert ("Made from other weights than the run's: run <code>genzoo train --resume --run-dir "
            "&#x27;" + str(rd) + "&#x27;</code> again.") in (rd / "report.html").read_text()


def test_report_hints_name_the_run_quoted(tmp_path):
    """The hints printed the run's path unquoted (``genzoo eval runs/my run`` cannot be pasted), and the one for
    missing metrics said RUN."""
    import json

    rd = tmp_path / "a b"
    assert main(["train", "gmm", "--data", "ring", "--steps", "2", "--run-dir", str(rd), "--no-progress"]) == 0
    assert main(["report", str(rd)]) == 0
    assert "No metrics yet: run <code>genzoo eval &#x27;" + str(rd) + "&#x27;</code>" in (rd / "report.html").read_text()
    assert main(["sample", str(rd), "-n", "4"]) == 0
    (rd / "pictures.json").write_text(json.dumps({"samples.png": ["x", 1, "0"]}))  # of other weights
    assert main(["report", str(rd)]) == 0
    assert "run <code>genzoo sample &#x27;" + str(rd) + "&#x27;</code> again" in (rd / "report.html").read_text()
    from genzoo.viz.report import _metrics_table

    assert "<code>genzoo eval &#x27;runs/my run&#x27;</code>" in _metrics_table(None, "runs/my run")


def test_a_stale_pictures_hint_gives_back_the_command_that_made_it(tmp_path):
    """The hint to make a picture of other weights again was its command's bare name: a picture of 9 samples with
    seed 3 was to be made again as 64 with seed 0, and `interpolate --arithmetic A-B+C` could not be pasted."""
    import json

    rd = tmp_path / "a b"
    assert main(["train", "gmm", "--data", "ring", "--steps", "2", "--run-dir", str(rd), "--no-progress"]) == 0
    assert main(["sample", str(rd), "-n", "9", "--seed", "3"]) == 0
    record = json.loads((rd / "pictures.json").read_text())["samples.png"]
    assert record["command"] == ["sample", "RUN", "-n", "9", "--seed", "3"], record
    assert main(["train", "--resume", "--run-dir", str(rd), "--steps", "4", "--no-progress"]) == 0  # new weights
    assert main(["report", str(rd)]) == 0
    page = (rd / "report.html").read_text()
    assert "run <code>genzoo sample &#x27;" + str(rd) + "&#x27; -n 9 --seed 3</code> again" in page
    (rd / "pictures.json").write_text(json.dumps({"samples.png": ["x", 1, "0"]}))  # an older genzoo's record
    assert main(["report", str(rd)]) == 0
    assert "run <code>genzoo sample &#x27;" + str(rd) + "&#x27;</code> again" in (rd / "report.html").read_text()


def test_loss_curves_plot_only_numbers(tmp_path, capsys):
    """A metrics.jsonl value edited into a dict or list was "an unexpected TypeError, a bug in genzoo" (exit 1), and
    a string made that panel's axis categories."""
    rd = tmp_path / "g"
    assert main(["train", "gmm", "--data", "ring", "--steps", "2", "--run-dir", str(rd), "--no-progress"]) == 0
    (rd / "metrics.jsonl").write_text('{"step": 1, "loss": 2}\n{"step": 2, "loss": {"a": 1}}\n{"step": 3, "loss": [1]}\n'
                                      '{"step": 4, "loss": "abc", "valid_loss": 1.5}\n{"step": 5, "loss": 1.0}\n')
    assert main(["report", str(rd)]) == 0 and "Loss curves" in (rd / "report.html").read_text()
    from genzoo.viz.report import _points

    assert _points([{"step": 4, "loss": "abc"}, {"step": 5, "loss": 1.0}, {"step": 6, "loss": True}], "loss") == ([5], [1.0])


@pytest.mark.parametrize("lines", [
    ['{"step": 9, "loss": 2.1399}'],                                                       # a run of <= log_every steps
    ['{"step": 10, "loss": NaN}', '{"step": 20, "loss": 2.0}', '{"step": 30, "loss": NaN}']])  # a point between NaNs
def test_a_training_curve_of_lone_points_is_drawn(lines, tmp_path):
    """Training terms were drawn as lines alone: a series of one row (any run of up to log_every steps), or a
    finite point between NaNs, drew nothing, and the panel was empty."""
    import numpy as np

    from genzoo.viz.report import _curves

    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    png = np.asarray(Image.open(io.BytesIO(_curves(tmp_path))).convert("RGB")).astype(int)
    blue = (np.abs(png - [0x1F, 0x77, 0xB4]).sum(-1) < 30).sum()  # matplotlib's first colour, the training curve's
    assert blue >= 4, blue  # (no legend: no validation twin)


def _drawn(monkeypatch) -> list:
    """The matplotlib figures saved while the caller runs, appended to the list returned (what a PNG shows, as
    objects: titles, lines' points)."""
    from matplotlib.figure import Figure

    figures, save = [], Figure.savefig

    def savefig(self, *a, **k):
        figures.append(self)
        return save(self, *a, **k)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return figures


def test_a_loss_term_named_with_dollars_is_drawn_as_written(tmp_path, monkeypatch):
    r"""A metrics.jsonl term with two '$' was read as mathtext: garbled, or ($\frac$) a ValueError at savefig. The
    test only opened the PNG (audit 134 F8), so a panel titled otherwise (the dollars dropped, say) passed: the
    title's text, once matplotlib has taken its mathtext escapes out, is the term as written, and is no mathtext."""
    from genzoo.viz.report import _curves

    figures = _drawn(monkeypatch)
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "$\\\\frac$": 1.0}\n{"step": 2, "$\\\\frac$": 0.5}\n')
    Image.open(io.BytesIO(_curves(tmp_path))).load()
    (fig,) = figures
    (ax,) = [ax for ax in fig.axes if ax.get_visible()]
    # (Text._preprocess_math: what matplotlib draws, "\$" unescaped, and whether as mathtext)
    assert ax.title._preprocess_math(ax.title.get_text()) == ("$\\frac$", False)
    assert [line.get_xydata().tolist() for line in ax.lines] == [[[1, 1.0], [2, 0.5]]]



def test_the_report_says_which_weights_the_run_holds(run, tmp_path):
    """The report headlined the newest grid's step beside a checkpoint's older weights without a word, and a run
    without weights got a 'run genzoo eval' hint that fails (audit 107)."""
    import re
    import shutil

    rd = tmp_path / "run"
    shutil.copytree(run, rd)
    (rd / "metrics.jsonl").unlink()  # (no curves to draw: a faster report)
    said = lambda: re.search(r'<p class="meta" id="weights">(.*?)</p>', write_report(rd).read_text())[1]  # noqa: E731
    assert said() == "weights: final (step 60)"
    (rd / "model.safetensors").unlink()  # killed after the grid of step 60, its newest checkpoint of step 40
    (rd / "checkpoints" / "step-00000060").rename(rd / "checkpoints" / "step-00000040")
    assert said() == (
        "weights: newest checkpoint, step 40 (no final weights: still training, or stopped before its end, which "
        f"<code>genzoo train --resume --run-dir {rd}</code> continues); the newest sample grid, of step 60, shows "
        "later weights than these")
    shutil.rmtree(rd / "checkpoints")
    (rd / "eval.json").unlink()
    assert said() == "weights: none yet (stopped before its first checkpoint, or still training)"
    text = (rd / "report.html").read_text()
    assert "No metrics: no weights yet (stopped before its first checkpoint, or still training)." in text
    assert "genzoo eval" not in text


def test_the_report_of_a_best_folder_names_its_weights_and_offers_no_sample_hint(run, tmp_path):
    """RUN/best read "weights: final", and its hint `genzoo sample RUN/best` is refused there (review 109)."""
    import json
    import re
    import shutil

    rd = tmp_path / "best"
    shutil.copytree(run, rd)
    shutil.rmtree(rd / "samples")
    shutil.rmtree(rd / "checkpoints")
    (rd / "metrics.jsonl").unlink()
    (rd / "best.json").write_text(json.dumps({"step": 40, "valid_loss": 1.0}))
    text = write_report(rd).read_text()
    assert re.search(r'<p class="meta" id="weights">(.*?)</p>', text)[1] == ("weights: those of the lowest "
                                                                            "validation loss, step 40")
    assert "No sample grids" not in text


def test_a_run_without_sample_grids_is_told_how_to_make_samples(run, tmp_path):
    """A run trained with --sample-every 0 got a report without a picture of the model and no hint."""
    import json
    import shutil

    rd = tmp_path / "run"
    shutil.copytree(run, rd)
    shutil.rmtree(rd / "samples")
    (rd / "metrics.jsonl").unlink()  # (no curves to draw: a faster report)
    recorded = json.loads((rd / "run.json").read_text())
    recorded["recipe"]["train"]["sample_every"] = 0
    (rd / "run.json").write_text(json.dumps(recorded))
    assert (f"<p>No sample grids (trained with --sample-every 0): <code>genzoo sample {rd}</code> makes samples.png, "
            "which the report shows.</p>") in write_report(rd).read_text()
    assert main(["sample", str(rd), "-n", "4"]) == 0
    text = write_report(rd).read_text()
    assert "No sample grids" not in text and "<h2>Samples (genzoo sample)</h2>" in text

def test_an_integer_past_pythons_digit_limit_in_metrics_is_a_damaged_line(tmp_path, monkeypatch):
    """A metrics.jsonl integer of over 4,300 digits raised a plain ValueError: 'a bug in genzoo' (exit 1). It is
    a damaged line: left out, the lines around it drawn. The test only opened the PNG (audit 134 F8): a reader
    that stopped at that line (step 1 alone drawn) passed."""
    from genzoo.viz.report import _curves

    figures = _drawn(monkeypatch)
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1' + "0" * 5000 + '}\n'
                                            '{"step": 3, "loss": 1.0}\n')
    Image.open(io.BytesIO(_curves(tmp_path))).load()
    (fig,) = figures
    (ax,) = [ax for ax in fig.axes if ax.get_visible()]
    assert ax.get_title() == "loss"
    assert [line.get_xydata().tolist() for line in ax.lines] == [[[1, 2.0], [3, 1.0]]]  # step 2 left out


def test_an_integer_past_the_float_range_in_metrics_is_drawn_as_infinite_not_a_crash(tmp_path, monkeypatch):
    """A metrics.jsonl integer of 400 digits (within Python's digit limit, past the float range) reached matplotlib,
    whose float conversion raised OverflowError: 'unexpected OverflowError ... a bug in genzoo', exit 1 (audit a138
    F1). Its value is infinite (not drawn), and a step past the range too; the other points are drawn."""
    from genzoo.viz.report import _curves

    figures = _drawn(monkeypatch)
    big = "1" + "0" * 400
    (tmp_path / "metrics.jsonl").write_text(f'{{"step": 1, "loss": 2.0}}\n{{"step": 2, "loss": {big}}}\n'
                                            f'{{"step": 3, "loss": 1.0}}\n{{"step": {big}, "loss": 0.5}}\n')
    Image.open(io.BytesIO(_curves(tmp_path))).load()
    (fig,) = figures
    (ax,) = [ax for ax in fig.axes if ax.get_visible()]
    assert [line.get_xydata().tolist() for line in ax.lines] == [[[1, 2.0], [2, float("inf")], [3, 1.0],
                                                                  [float("inf"), 0.5]]]


def test_the_report_embeds_the_pixels_of_the_run_s_own_pictures_only(tmp_path):
    """The newest training grid was embedded byte for byte through a link (any image of the user's, a JPEG labelled
    PNG), and a picture's bytes after its image were embedded whole (a 40 MB report): the report embeds the pixels of
    the run's own grids and pictures, re-encoded as PNG, and leaves linked grids out (review r121 F6, F7)."""
    import base64
    import re

    from genzoo.viz.report import write_report

    rd = tmp_path / "run"
    assert main(["train", "vae", "--steps", "4", "--sample-every", "2", "--set", "data.n=64", "--set", "hidden=[8]",
                 "--run-dir", str(rd), "--no-progress"]) == 0
    newest = sorted((rd / "samples").glob("step-*.png"))[-1]
    Image.new("RGB", (40, 40), (200, 10, 10)).save(tmp_path / "private.jpg", "JPEG")
    newest.unlink()
    newest.symlink_to(tmp_path / "private.jpg")
    Image.new("RGB", (12, 12), (1, 2, 3)).save(rd / "samples.png")
    with open(rd / "samples.png", "ab") as f:
        f.write(b"SECRET-APPENDED" + bytes(100_000))
    text = write_report(rd).read_text()
    shown = {alt: base64.b64decode(data) for alt, data in
             re.findall(r'<img alt="([^"]*)" src="data:image/png;base64,([^"]*)"', text)}
    assert b"SECRET" not in b"".join(shown.values()) and "A" * 1000 not in text
    with Image.open(io.BytesIO(shown["samples.png"])) as im:
        assert im.format == "PNG" and im.size == (12, 12) and im.convert("RGB").getpixel((0, 0)) == (1, 2, 3)
    with Image.open(io.BytesIO(shown["samples"])) as im:  # the newest grid that is the run's own, not the link
        assert im.format == "PNG" and im.size != (40, 40)
    assert "Samples at step 2</h2>" in text


def _tiny_run(rd):
    """A `genzoo train` run in a tenth of a second: checkpoints at steps 1 and 2, no sample grids."""
    assert main(["train", "vae", "--steps", "2", "--checkpoint-every", "1", "--sample-every", "0", "--set", "data.n=64",
                 "--set", "latent_dim=2", "--set", "hidden=[8]", "--run-dir", str(rd), "--no-progress"]) == 0


def test_a_lone_surrogate_in_run_json_is_escaped_not_a_crash(tmp_path, capsys):
    """A run.json holding "\\ud800" (valid JSON; a hand edit or another tool) made report fail to encode the page:
    'unexpected UnicodeEncodeError ... a bug in genzoo'."""
    import json

    rd = tmp_path / "vae"
    _tiny_run(rd)
    text = (rd / "run.json").read_text()
    (rd / "run.json").write_text(text.replace('"command": [', '"command": ["\\ud800", ', 1))
    assert "\ud800" in json.loads((rd / "run.json").read_text())["command"]
    capsys.readouterr()
    assert main(["report", str(rd)]) == 0, capsys.readouterr().err
    assert b"\\ud800" in (rd / "report.html").read_bytes()


def test_a_run_json_with_a_byte_order_mark_resumes(tmp_path, capsys):
    """run.json saved by an editor that writes a UTF-8 BOM (PowerShell 5, Notepad before 2019) was 'corrupt'."""
    rd = tmp_path / "vae"
    _tiny_run(rd)
    (rd / "run.json").write_bytes(b"\xef\xbb\xbf" + (rd / "run.json").read_bytes())
    capsys.readouterr()
    assert main(["train", "--resume", "--run-dir", str(rd), "--steps", "3", "--no-progress"]) == 0, capsys.readouterr().err
    from genzoo.io import latest_checkpoint

    assert latest_checkpoint(rd).name == "step-00000003"


def test_a_recorded_command_keeps_flag_values_equal_to_the_runs_name(tmp_path, monkeypatch):
    """Every word equal to the run's path became RUN (r113 F8): `sample 9 -n 9 --seed 9` of a run named 9 was to be
    remade as `sample RUN -n RUN --seed RUN`."""
    import json

    monkeypatch.chdir(tmp_path)
    assert main(["train", "gmm", "--data", "ring", "--steps", "2", "--run-dir", "9", "--no-progress"]) == 0
    assert main(["sample", "-n", "9", "9", "--seed", "9"]) == 0
    record = json.loads((tmp_path / "9" / "pictures.json").read_text())["samples.png"]
    assert record["command"] == ["sample", "-n", "9", "RUN", "--seed", "9"], record


def test_an_eval_json_with_an_overflowing_number_or_odd_asked_values_is_damage_not_a_bug(run, tmp_path, capsys):
    """A 401-digit integer for a likelihood (an OverflowError where a float was formatted) and asked.parzen_sigmas
    of strings and objects (formatted with :g in the advice to evaluate again) made `genzoo report` end as 'a bug in
    genzoo' (audit a137 F5)."""
    import json
    import shutil

    from genzoo.io import dumps

    rd = tmp_path / "run"
    shutil.copytree(run, rd)
    good = json.loads((run / "eval.json").read_text())
    row = next(r for r in good["likelihood"]["rows"] if "nats" in r)
    row["nats"] = 10 ** 400
    (rd / "eval.json").write_text(dumps(good))
    assert main(["report", str(rd)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"genzoo: error: {rd / 'eval.json'} is not a genzoo evaluation file (OverflowError: ")
    good = json.loads((run / "eval.json").read_text())
    good["asked"] = {**good["asked"], "metrics_version": -1, "parzen_sigmas": ["x", {"a": 1}, 0.25]}
    (rd / "eval.json").write_text(dumps(good))
    assert main(["report", str(rd)]) == 0
    assert "--parzen-sigmas" in (rd / "report.html").read_text() and ",0.25" in (rd / "report.html").read_text()
