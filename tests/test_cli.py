import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genzoo.cli import main


def run(capsys, *args):
    try:
        code = main(list(args))
    except SystemExit as e:  # argparse's errors (an unknown flag) exit while parsing
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_models_lists_families(capsys):
    code, out, _ = run(capsys, "models")
    assert code == 0 and "vae" in out and "gmm" in out


def test_train_sample_eval_end_to_end(tmp_path, capsys):
    rd = tmp_path / "run"
    code, _, err = run(capsys, "train", "vae", "--steps", "300", "--run-dir", str(rd), "--no-progress",
                       "--set", "latent_dim=4", "--set", "hidden=64", "--sample-every", "100")
    assert code == 0, err
    run_json = json.loads((rd / "run.json").read_text())
    assert run_json["recipe"]["data"] == {"name": "digits", "binarize": True}
    assert run_json["recipe"]["model"]["latent_dim"] == 4  # typed, as the model reads it
    assert json.loads((rd / "config.json").read_text())["config"]["latent_dim"] == 4
    assert len(list((rd / "samples").glob("step-*.png"))) == 3
    code, out, err = run(capsys, "sample", str(rd), "-n", "16", "-o", str(tmp_path / "g.png"))
    assert code == 0, err
    img = np.asarray(Image.open(tmp_path / "g.png"))
    assert img.ndim == 2 and img.std() > 10  # a grid with content, not a blank picture
    code, out, err = run(capsys, "eval", str(rd), "--iwae-k", "50", "--no-progress")
    assert code == 0, err
    assert "NLL (IWAE k=50)" in out and "bits/dim" in out
    rep = json.loads((rd / "eval.json").read_text())["likelihood"]
    kinds = {r["kind"]: r for r in rep["rows"]}
    assert set(kinds) == {"elbo", "iwae-50"} and rep["space"] == "binarized" and rep["n"] == 300
    assert kinds["iwae-50"]["nats"] <= kinds["elbo"]["nats"]  # the IWAE bound is tighter
    assert kinds["elbo"]["bits_per_dim"] == pytest.approx(kinds["elbo"]["nats"] / (64 * np.log(2)))


def test_gmm_recipe_and_eval(tmp_path, capsys):
    rd = tmp_path / "gmm"
    code, _, err = run(capsys, "train", "--config", "configs/gmm-ring.toml", "--run-dir", str(rd), "--no-progress",
                       "--steps", "20")
    assert code == 0, err
    code, out, err = run(capsys, "eval", str(rd), "--no-progress")
    assert code == 0, err
    result = json.loads((rd / "eval.json").read_text())
    rep = result["likelihood"]
    assert rep["rows"][0]["kind"] == "exact" and rep["space"] == "continuous"
    assert result["metrics"] == ["nll", "modes"] and result["modes"]["n_modes"] == 8  # auto: the ring has centres
    assert "modes captured" in out
    assert run(capsys, "sample", str(rd), "-n", "500")[0] == 0 and (rd / "samples.png").exists()


def test_gmm_digits_reports_discrete_units(tmp_path, capsys):
    rd = tmp_path / "g"
    assert run(capsys, "train", "gmm", "--steps", "5", "--run-dir", str(rd), "--no-progress",
               "--set", "n_components=3", "--set", "covariance=diag")[0] == 0
    code, out, err = run(capsys, "eval", str(rd), "--no-progress")
    rep = json.loads((rd / "eval.json").read_text())["likelihood"]
    assert rep["space"] == "dequantized" and rep["levels"] == 17
    # a density on [0,1]^64 reported on the 17-level data: bits/dim between 0 and log2(17)
    assert 0 < rep["rows"][0]["bits_per_dim"] < np.log2(17)


def _npz(path, x):
    np.savez(path, x=x)
    return str(path)


@pytest.mark.parametrize("args,needle", [
    (["train", "vea"], "unknown model 'vea' (did you mean 'vae'?)"),
    (["train", "vae", "--data", "mnits"], "unknown dataset 'mnits'"),
    (["train", "vae", "--set", "latnt_dim=3"],
     "unknown --set key 'latnt_dim' (did you mean 'latent_dim'? Or, for a dataset option, data.latnt_dim=...)"),
    # a bare name= set the dataset (an easy slip for a model option); the data's name and root take data.
    (["train", "vae", "--set", "name=ring"], "unknown --set key 'name' (the dataset's name takes a prefix: data.name=...)"),
    (["train", "gmm", "--set", "root=/tmp"], "unknown --set key 'root' (the dataset's root takes a prefix: data.root=...)"),
    (["train", "vae", "--set", "std=0.1"], "data.std=..."),
    (["train", "vae", "--set", "latent_dim=three"], "bad value 'three' for vae.latent_dim: expected int"),
    (["train", "vae", "--set", "latent_dim=1e400"], "bad value '1e400' for vae.latent_dim: expected int"),
    (["train", "vae", "--set", "latent_dim=2.5e0"], "bad value '2.5e0' for vae.latent_dim: expected int"),
    (["train", "vae", "--set", "model.hiden=3"], "did you mean 'hidden'"),
    (["train", "vae", "--data", "/no/such/file.npz"], "/no/such/file.npz"),
    (["train", "vae", "--config", "/no/recipe.toml"], "recipe not found"),
    (["train", "vae", "--data", "mnist", "--data-root", "/no/such/dir"], "/no/such/dir"),
    (["train", "vae", "--set", "data.n_modes=4"], "n_modes"),
    (["train", "gmm", "--data", "ring", "--set", "data.std=wide"], "wide"),
    (["train", "vae", "--device", "tpu"], "unknown device 'tpu'"),
    (["sample", "/no/such/run"], "not a genzoo run"),
    (["eval", "."], "not a genzoo run"),
    (["train", "--resume"], "--resume needs --run-dir"),
    (["train", "vae", "--run-dir", " "], "--run-dir needs a folder name"),
    (["train", "vae", "--set", "=3"], "--set takes key=value, got '=3' (no key)"),
    (["train", "vae", "--stpes", "5"], "unrecognized arguments: --stpes 5 (did you mean '--steps'?)"),
    (["bench", "speed", "--quik"], "--quik (did you mean '--quick'?)"),
    (["train", "vae", "--max-minutes", "nan"], "bad value nan for train.max_minutes: expected a number, not NaN"),
    (["train", "vae", "--set", "lr=nan"], "bad value 'nan' for vae.lr: expected a number, not NaN"),
    (["sample", "/no/run", "--metrics", "x"], "unrecognized arguments: --metrics x (see `genzoo sample --help`)"),
])
def test_bad_input_one_line_exit_2(capsys, args, needle):
    code, out, err = run(capsys, *args)
    assert code == 2
    assert needle in err and err.count("\n") == 1 and err.startswith("genzoo: error: "), err


def test_bad_user_data(tmp_path, capsys):
    x = np.random.default_rng(0).random((20, 1, 8, 8), dtype=np.float32)
    x[3, 0, 2, 2] = np.nan
    code, _, err = run(capsys, "train", "vae", "--data", _npz(tmp_path / "nan.npz", x), "--steps", "1")
    assert code == 2 and "NaN" in err and err.count("\n") == 1
    code, _, err = run(capsys, "train", "vae", "--data", _npz(tmp_path / "shape.npz", np.zeros((5, 2, 3, 4, 5))))
    assert code == 2 and "shape" in err and err.count("\n") == 1
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 not really a zip")
    code, _, err = run(capsys, "train", "vae", "--data", str(tmp_path / "corrupt.npz"))
    assert code == 2 and "corrupt.npz" in err and err.count("\n") == 1


def test_bad_runs(tmp_path, capsys):
    rd = tmp_path / "run"
    assert run(capsys, "train", "vae", "--steps", "20", "--run-dir", str(rd), "--no-progress")[0] == 0
    before = (rd / "model.safetensors").read_bytes()
    code, _, err = run(capsys, "train", "vae", "--steps", "20", "--run-dir", str(rd), "--no-progress")
    assert code == 2 and "already holds a run" in err
    assert (rd / "model.safetensors").read_bytes() == before  # nothing lost
    (rd / "model.safetensors").write_bytes(b"not safetensors")
    code, _, err = run(capsys, "sample", str(rd))
    assert code == 2 and "corrupt weights" in err and err.count("\n") == 1
    code, _, err = run(capsys, "train", "--resume", "--run-dir", str(rd), "--set", "latent_dim=3")
    assert code == 2 and "drop --set" in err
    (rd / "model.safetensors").write_bytes(before)
    (rd / "run.json").write_text(json.dumps({"some": "thing"}))
    code, _, err = run(capsys, "eval", str(rd))
    assert code == 2 and "not a genzoo run file" in err
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"]}))
    code, _, err = run(capsys, "sample", str(foreign))
    assert code == 2 and "not a genzoo model config" in err


def test_real_process_exit_code_and_no_traceback(tmp_path):
    p = subprocess.run([sys.executable, "-m", "genzoo", "train", "nosuchmodel"], capture_output=True, text=True)
    assert p.returncode == 2 and "Traceback" not in p.stderr and "unknown model" in p.stderr
    p = subprocess.run([sys.executable, "-m", "genzoo", "train", "vae", "--stesp", "3"], capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "--stesp" in p.stderr


def test_recipe_errors(tmp_path, capsys):
    bad = tmp_path / "r.toml"
    bad.write_text("[modle]\nname='vae'\n")
    code, _, err = run(capsys, "train", "--config", str(bad))
    assert code == 2 and "unknown table [modle]" in err
    bad.write_text("[model]\nname='vae'\n[train]\nstpes=3\n")
    code, _, err = run(capsys, "train", "--config", str(bad))
    assert code == 2 and "unknown [train] key 'stpes'" in err
    bad.write_text("[model\n")
    code, _, err = run(capsys, "train", "--config", str(bad))
    assert code == 2 and "not valid TOML" in err
    bad.write_text("name = 'gmm'\n[data]\nname = 'ring'\n")  # was "unknown table [name]"
    code, _, err = run(capsys, "train", "--config", str(bad))
    assert code == 2 and "'name' stands outside any table: put it under [model], [data] or [train]" in err
    bad.write_text("[model]\nname = 'gmm'\n[data]\nname = 'ring'\nbinarise = true\n")
    code, _, err = run(capsys, "train", "--config", str(bad))
    assert code == 2 and "(did you mean 'binarize'?); its own options: n_modes, radius, std (and every dataset's: n" in err


def test_model_transform_applies_to_discrete_data_only(tmp_path, capsys, mnist_root):
    rd = tmp_path / "m"
    code, _, err = run(capsys, "train", "vae", "--data", "mnist", "--data-root", str(mnist_root), "--steps", "2",
                       "--run-dir", str(rd), "--no-progress", "--set", "data.n=256")
    assert code == 0, err
    assert json.loads((rd / "run.json").read_text())["recipe"]["data"]["binarize"] is True
    code, _, err = run(capsys, "train", "vae", "--data", "ring", "--steps", "2", "--run-dir", str(tmp_path / "r"))
    assert code == 2 and "Bernoulli decoder scores pixels in [0, 1]" in err
    assert not (tmp_path / "r").exists()  # a run that never started leaves no folder behind
    mine = tmp_path / "mine"  # ... and, in a folder of the user's, only what was there before
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    code, _, err = run(capsys, "train", "vae", "--data", "ring", "--steps", "2", "--run-dir", str(mine))
    assert code == 2 and [p.name for p in mine.iterdir()] == ["notes.txt"]
    rd = tmp_path / "g"
    code, _, err = run(capsys, "train", "vae", "--data", "ring", "--set", "likelihood=gaussian", "--steps", "2",
                       "--run-dir", str(rd), "--no-progress")
    assert code == 0, err
    assert "binarize" not in json.loads((rd / "run.json").read_text())["recipe"]["data"]


def test_resume_takes_a_new_data_root_and_write_cadence(tmp_path, capsys, mnist_root):
    import shutil

    moved = tmp_path / "moved-mnist"
    shutil.copytree(mnist_root, moved)
    rd = tmp_path / "m"
    code, _, err = run(capsys, "train", "gmm", "--data", "mnist", "--data-root", str(moved), "--steps", "2",
                       "--run-dir", str(rd), "--no-progress", "--set", "data.n=256", "--set", "n_components=2")
    assert code == 0, err
    shutil.rmtree(moved)  # the files moved away: resuming without a new root must fail with a clear error
    code, _, err = run(capsys, "train", "--resume", "--run-dir", str(rd), "--steps", "4", "--no-progress")
    assert code == 2 and err.count("\n") == 1 and "moved-mnist" in err
    code, _, err = run(capsys, "train", "--resume", "--run-dir", str(rd), "--steps", "4", "--no-progress",
                       "--data-root", str(mnist_root), "--checkpoint-every", "1")
    assert code == 0, err
    steps = sorted(int(p.name.split("-")[1]) for p in (rd / "checkpoints").iterdir())
    assert 3 in steps and 4 in steps  # written every step from the resumed step on


def test_models_options_listing(capsys):
    code, out, _ = run(capsys, "models", "vae")
    assert code == 0 and "latent_dim" in out and "Literal['bernoulli', 'gaussian']" in out
    assert "`genzoo train vae` trains on digits (binarize=True) with steps=6000, batch_size=128 unless told" in out
    code, out, _ = run(capsys, "models", "gan")
    rows = [line for line in out.splitlines() if line.startswith("  ")]
    assert len({line.index(" = ") for line in rows}) == 1  # aligned, instance_noise_steps too
    code, out, _ = run(capsys, "models", "ssvae")  # a placeholder default says what it stands for
    assert "alpha                    = 0.0         float  (0: 0.1 x labels" in out
    code, out, _ = run(capsys, "models", "wgan")
    assert "(None: 5e-5 with penalty=clip, 1e-4 with gp)" in out


def test_data_list_names_every_datasets_options(capsys):
    """The options every dataset takes (n, binarize, dequantize, seed, root) were in no listing."""
    code, out, _ = run(capsys, "data")
    assert code == 0 and "ring " in out and "std=0.01" in out
    common = out.splitlines()[-1]
    assert common.startswith("every dataset also takes (--set data.KEY=VALUE): n: ")
    assert all(f"; {k}: " in common for k in ("binarize", "dequantize", "seed", "root"))
    assert "PNG/JPEG/BMP/GIF/TIFF/WebP/Netpbm images" in out  # every family the loader reads (audit 132: no Netpbm)


def test_data_download_needs_a_folder(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("GENZOO_DATA", raising=False)
    code, _, err = run(capsys, "data", "download", "mnist")
    assert code == 2 and "--root DIR" in err
    code, _, err = run(capsys, "data", "download", "cifar10", "--root", "/tmp")
    assert code == 2 and "only mnist" in err
    (tmp_path / "afile").write_text("x")
    code, _, err = run(capsys, "data", "download", "mnist", "--root", str(tmp_path / "afile"))
    assert code == 2 and f"cannot download into {tmp_path / 'afile'}: it is a file, not a folder" in err


def test_devices_that_are_not_there_are_one_line_errors(tmp_path, capsys):
    assert run(capsys, "train", "gmm", "--device", "tpu", "--steps", "1", "--run-dir", str(tmp_path / "a"))[0] == 2
    if not torch.backends.mps.is_available():
        code, _, err = run(capsys, "train", "gmm", "--device", "mps", "--steps", "1", "--run-dir", str(tmp_path / "b"))
        assert code == 2 and "no Apple GPU" in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_keep_best_from_the_cli_is_a_run_of_its_own(tmp_path, capsys):
    """`--set keep_best=true` writes RUN/best/, which `genzoo eval` takes as a run; a bad value writes nothing."""
    rd = tmp_path / "run"
    code, _, err = run(capsys, "train", "vae", "--steps", "60", "--run-dir", str(rd), "--no-progress",
                       "--set", "latent_dim=4", "--set", "hidden=32", "--set", "log_every=2", "--set", "keep_best=true")
    assert code == 0, err
    assert json.loads((rd / "run.json").read_text())["recipe"]["train"]["keep_best"] is True
    best = json.loads((rd / "best" / "best.json").read_text())
    assert best["step"] in (20, 40, 60)
    code, out, err = run(capsys, "eval", str(rd / "best"), "--iwae-k", "10", "-n", "50", "--no-progress")
    assert code == 0, err
    assert "NLL (IWAE k=10)" in out and (rd / "best" / "eval.json").is_file()
    code, _, err = run(capsys, "train", "vae", "--steps", "2", "--run-dir", str(tmp_path / "bad"), "--no-progress",
                       "--set", "keep_best=perhaps")
    assert code == 2 and "keep_best" in err and not (tmp_path / "bad").exists()


def test_empty_test_split_is_one_line(tmp_path, capsys):
    """Fewer than 10 examples all go to train: commands that need the test split say so in one line."""
    x = (np.random.default_rng(0).random((8, 1, 8, 8)) > 0.5).astype(np.float32)
    rd = str(tmp_path / "run")
    assert run(capsys, "train", "vae", "--data", _npz(tmp_path / "tiny.npz", x), "--steps", "2", "--run-dir", rd,
               "--no-progress")[0] == 0
    for args in (["eval", rd], ["inpaint", rd, "--mask", "center"], ["interpolate", rd, "--between", "0", "1"]):
        code, _, err = run(capsys, *args)
        assert code == 2 and "test split" in err and "is empty" in err and err.count("\n") == 1, (args, err)
    code, out, _ = run(capsys, "eval", rd, "--split", "train", "--metrics", "nll", "--iwae-k", "2")
    assert code == 0 and "elbo" in out


def test_bench_output_not_text_refused_before_the_run(tmp_path, capsys):
    out = tmp_path / "table.md"
    out.write_bytes(b"\xc1\xff\x00 not text")
    code, printed, err = run(capsys, "bench", "fgan-gaussian", "--steps", "5", "--jobs", "1", "--output", str(out))
    assert code == 2 and "cannot read it as a Markdown" in err and err.count("\n") == 1
    assert printed == "" and out.read_bytes() == b"\xc1\xff\x00 not text"  # refused before running, file untouched


def test_a_batch_larger_than_the_set_is_noted(tmp_path, capsys):
    code, _, err = run(capsys, "train", "vae", "--steps", "2", "--batch-size", "5000", "--run-dir", str(tmp_path / "r"),
                       "--no-progress", "--set", "hidden=16")
    assert code == 0 and "batch size 5000 is more than the 1297 training examples" in err


def test_run_json_records_model_and_data_options_typed(tmp_path):
    rd = tmp_path / "gmm"
    assert main(["train", "gmm", "--data", "ring", "--set", "n_components=8", "--set", "data.std=0.05", "--set",
                 "data.n=500", "--set", "covariance=diag", "--steps", "3", "--run-dir", str(rd), "--no-progress"]) == 0
    record = json.loads((rd / "run.json").read_text())
    recipe = record["recipe"]
    assert recipe["model"] == {"name": "gmm", "n_components": 8, "covariance": "diag"}
    assert recipe["data"] == {"name": "ring", "std": 0.05, "n": 500}
    assert record["device"] == "cpu"  # --device auto, resolved
    del record["device"]  # as a run of an older genzoo: its device is unknown, and stays so at the top
    (rd / "run.json").write_text(json.dumps(record))
    assert main(["train", "--resume", "--run-dir", str(rd), "--steps", "5", "--no-progress"]) == 0
    record = json.loads((rd / "run.json").read_text())
    assert "device" not in record and record["resumed"][-1]["device"] == "cpu"


CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.toml"))


@pytest.mark.parametrize("config", [pytest.param(c, marks=pytest.mark.slow) if c.stem == "realnvp-mnist" else c
                                    for c in CONFIGS], ids=[c.stem for c in CONFIGS])  # (realnvp-mnist's 25 s: -m slow)
def test_every_shipped_recipe_trains_a_step(config, tmp_path, mnist_root):
    """Each configs/*.toml parses, builds its model on its data and takes a training step (on 256 examples)."""
    rd = tmp_path / config.stem
    assert main(["train", "--config", str(config), "--data-root", str(mnist_root), "--steps", "1", "--set", "data.n=256",
                 "--batch-size", "16", "--run-dir", str(rd), "--no-progress"]) == 0
    assert (rd / "model.safetensors").is_file()


def test_a_relative_data_file_is_recorded_by_its_absolute_path(tmp_path, capsys, monkeypatch):
    """run.json names the file the run was trained on, so eval and --resume from elsewhere read that file, not
    whatever holds the same relative name there."""
    rng = np.random.default_rng(0)
    for sub, centre in (("a", 0.0), ("b", 100.0)):
        (tmp_path / sub).mkdir()
        np.savez(tmp_path / sub / "pts.npz", x=rng.normal(centre, 1.0, size=(200, 2)).astype(np.float32))
    monkeypatch.chdir(tmp_path / "a")
    assert main(["train", "gmm", "--data", "pts.npz", "--set", "n_components=2", "--steps", "3", "--run-dir", "run",
                 "--no-progress"]) == 0
    recipe = json.loads((tmp_path / "a" / "run" / "run.json").read_text())["recipe"]
    assert recipe["data"]["name"] == f"npz:{tmp_path / 'a' / 'pts.npz'}"
    code, out, _ = run(capsys, "eval", "run", "--no-write")
    monkeypatch.chdir(tmp_path / "b")
    code2, out2, _ = run(capsys, "eval", "../a/run", "--no-write")
    assert code == code2 == 0 and f"npz:{tmp_path / 'a' / 'pts.npz'}" in out2 and out2 == out


def test_data_root_and_registered_names_beside_folders(tmp_path, capsys, monkeypatch, mnist_root):
    monkeypatch.setenv("HOME", str(tmp_path))
    code, _, err = run(capsys, "train", "vae", "--data", "mnist", "--data-root", "~/nowhere", "--steps", "1",
                       "--run-dir", str(tmp_path / "r1"), "--no-progress")
    assert code == 2 and f"MNIST not found in {tmp_path / 'nowhere'} " in err  # ~ expanded, as data.root and GENZOO_DATA
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ring").mkdir()  # a folder named like a registered dataset: the name wins, with a warning ...
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "ring" / "a.png")
    code, out, err = run(capsys, "train", "gmm", "--data", "ring", "--steps", "1", "--run-dir", str(tmp_path / "r2"),
                         "--no-progress")
    assert code == 0 and "warning: --data ring is genzoo's dataset 'ring', not the folder ./ring" in err
    (tmp_path / "mnist").mkdir()  # ... if the folder holds images: not MNIST's IDX folder, read with --data-root
    code, out, err = run(capsys, "train", "gmm", "--data", "mnist", "--data-root", str(mnist_root), "--steps", "1",
                         "--run-dir", str(tmp_path / "r5"), "--no-progress", "--set", "data.n=100")
    assert code == 0 and "warning" not in err
    code, _, err = run(capsys, "train", "gmm", "--data", "ring", "--set", "data.split=test", "--steps", "1",
                       "--run-dir", str(tmp_path / "r3"), "--no-progress")
    assert code == 2 and "a data recipe has no 'split'" in err and err.count("\n") == 1


def test_picture_commands_refuse_nan_weights(tmp_path, capsys):
    """eval refused a diverged run's NaN weights; sample and interpolate drew black pictures with exit 0."""
    from safetensors.torch import load_file, save_file

    rd = tmp_path / "vae"
    assert run(capsys, "train", "vae", "--steps", "3", "--run-dir", str(rd), "--no-progress", "--set", "hidden=[8]")[0] == 0
    weights = load_file(rd / "model.safetensors")
    name = next(k for k in weights if "decoder" in k)
    save_file({**weights, name: torch.full_like(weights[name], float("nan"))}, rd / "model.safetensors")
    for command in (["sample", str(rd), "-o", str(tmp_path / "s.png")], ["interpolate", str(rd), "-o", str(tmp_path / "i.png")]):
        code, _, err = run(capsys, *command)
        assert code == 2 and "NaN or infinite weights" in err and "Nothing to draw from" in err
    assert not (tmp_path / "s.png").exists() and not (tmp_path / "i.png").exists()
    code, _, err = run(capsys, "eval", str(rd), "--no-write")
    assert code == 2 and "Nothing to evaluate" in err


def test_runs_started_in_the_same_second_get_a_folder_each(tmp_path, capsys, monkeypatch):
    """The default folder runs/MODEL-DATA-TIME is stamped to the second: the second run of a sweep launched at
    once was refused ('already holds a run', or 'another process is training ...: choose another --run-dir')."""
    import time as _time

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(_time, "strftime", lambda fmt, *a: "20261206-101500" if fmt == "%Y%m%d-%H%M%S" else "x")
    for _ in range(3):
        assert run(capsys, "train", "gmm", "--data", "ring", "--steps", "2", "--no-progress")[0] == 0
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [
        "gmm-ring-20261206-101500", "gmm-ring-20261206-101500-2", "gmm-ring-20261206-101500-3"]
    assert all((p / "model.safetensors").is_file() for p in (tmp_path / "runs").iterdir())
    assert run(capsys, "train", "gmm", "--data", "ring", "--steps", "0", "--no-progress")[0] == 2  # refused: no folder left
    assert len(list((tmp_path / "runs").iterdir())) == 3


def test_resume_of_a_best_folder_points_at_its_run(tmp_path, capsys):
    """--resume --run-dir RUN/best advised removing the folder: the best weights."""
    rd = tmp_path / "r"
    assert run(capsys, "train", "vae", "--steps", "4", "--run-dir", str(rd), "--no-progress", "--set", "hidden=[8]",
               "--set", "keep_best=true", "--set", "log_every=1")[0] == 0
    assert (rd / "best" / "best.json").is_file()
    code, _, err = run(capsys, "train", "--resume", "--run-dir", str(rd / "best"), "--steps", "8", "--no-progress")
    assert code == 2 and f"not a run of its own: resume that (--run-dir {rd})" in err and "remove" not in err
    assert (rd / "best" / "model.safetensors").is_file()


@pytest.mark.parametrize("model, sets, space", [
    ("realnvp", ["data.binarize=false"], "dequantized"),  # was discrete-as-real: naming one key dropped both defaults
    ("vae", ["data.dequantize=false"], "binarized"),      # was discrete-as-real (grey levels for a Bernoulli decoder)
    ("realnvp", ["data.dequantize=false"], "discrete-as-real"),
    ("realnvp", ["data.binarize=true"], "binarized"),     # a transform turned on replaces the default one
    ("vae", ["data.dequantize=true"], "dequantized"),
])
def test_the_models_default_data_transform_yields_key_by_key(model, sets, space, tmp_path):
    from genzoo.data import load_spec

    rd = tmp_path / "r"
    assert main(["train", model, "--steps", "1", "--set", "data.n=64", *[a for s in sets for a in ("--set", s)],
                 "--run-dir", str(rd), "--no-progress"]) == 0
    assert load_spec(json.loads((rd / "run.json").read_text())["recipe"]["data"], "train").space == space


def test_the_training_banner_names_the_space_as_eval_does(tmp_path, capsys):
    """A Bernoulli VAE on grey levels was announced as 'discrete-as-real', which eval calls 'bernoulli-on-grey'."""
    assert main(["train", "vae", "--set", "data.binarize=false", "--steps", "2", "--run-dir", str(tmp_path / "g"),
                 "--no-progress"]) == 0
    assert "on digits (bernoulli-on-grey, 1297 examples" in capsys.readouterr().err
    assert main(["train", "vae", "--steps", "2", "--run-dir", str(tmp_path / "b"), "--no-progress"]) == 0
    assert "on digits (binarized, 1297 examples" in capsys.readouterr().err
    np.savez(tmp_path / "bits.npz", x=np.random.default_rng(0).random((50, 6)) < 0.5)  # 0/1 as they are: binarized
    assert main(["train", "vae", "--data", f"npz:{tmp_path / 'bits.npz'}", "--set", "data.binarize=false", "--steps",
                 "2", "--run-dir", str(tmp_path / "v"), "--no-progress"]) == 0
    assert "(binarized, 40 examples" in capsys.readouterr().err


def test_every_option_of_every_command_has_help():
    # eval's and compare's --split, --seed and --no-progress printed bare in --help
    from genzoo.cli import _parser

    parser = _parser()
    commands = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices
    bare = [f"{name} {a.option_strings[0]}" for name, sub in commands.items() for a in sub._actions
            if a.option_strings and a.help is None]
    assert bare == []


def test_eval_and_compare_help_say_what_seed_batch_size_and_iwae_k_also_do():
    """--seed also draws the test set's binarization and dequantization noise (an exact NLL of dequantized data moves
    with it), --batch-size batches the exact log_prob too, and --iwae-k 0 gives the ELBO alone: the help said none."""
    from genzoo.cli import _parser

    commands = next(a for a in _parser()._actions if a.__class__.__name__ == "_SubParsersAction").choices
    for name in ("eval", "compare"):
        helps = {a.option_strings[0]: a.help for a in commands[name]._actions
                 if a.option_strings}
        assert "binarization or dequantization noise" in helps["--seed"] and "exact NLL too" in helps["--seed"]
        assert "the exact log_prob and the bounds" in helps["--batch-size"]
        assert "0: the ELBO alone" in helps["--iwae-k"]


def test_eval_and_compare_seed_help_names_kids_subsets_and_the_random_real_images():
    """--seed also draws KID's subsets and the random -n real images of the feature metrics: the help said neither."""
    from genzoo.cli import _parser

    commands = next(a for a in _parser()._actions if a.__class__.__name__ == "_SubParsersAction").choices
    for name in ("eval", "compare"):
        seed = next(a.help for a in commands[name]._actions if "--seed" in a.option_strings)
        assert "KID's subsets" in seed and "random -n real images of the feature metrics" in seed


def test_a_time_budget_from_the_command_line_and_on_resume(tmp_path, capsys):
    """The time budget was `--set max_minutes=M` alone, named in no --help, and a resume (which refuses --set)
    could neither give nor change one: --max-minutes, allowed on --resume and recorded as --steps is there."""
    rd = tmp_path / "mm"
    code, _, err = run(capsys, "train", "vae", "--steps", "50", "--max-minutes", "1e-9", "--set", "hidden=16",
                       "--run-dir", str(rd), "--no-progress")
    assert code == 0 and "stopped by max_minutes=1e-09 with 49 of 50 steps left" in err, err
    record = json.loads((rd / "run.json").read_text())
    assert record["recipe"]["train"]["max_minutes"] == 1e-9 and "resumed" not in record
    code, _, err = run(capsys, "train", "--resume", "--run-dir", str(rd), "--max-minutes", "2e-9", "--no-progress")
    assert code == 0 and "stopped by max_minutes=2e-09 with 48 of 50 steps left" in err, err
    record = json.loads((rd / "run.json").read_text())  # a later plain --resume keeps it, as it keeps --steps
    assert record["recipe"]["train"]["max_minutes"] == 2e-9 and "--max-minutes" in record["resumed"][-1]["command"]
    code, _, err = run(capsys, "train", "--resume", "--run-dir", str(rd), "--max-minutes", "0", "--no-progress")
    assert code == 0 and "max_minutes" not in err and "(steps 3-50)" in err, err  # 0: no budget
    assert "max_minutes" not in json.loads((rd / "run.json").read_text())["recipe"]["train"]
    code, _, err = run(capsys, "train", "vae", "--steps", "5", "--max-minutes", "-1", "--run-dir", str(tmp_path / "n"))
    assert code == 2 and "max_minutes must be a positive, finite number, got -1.0" in err
    code, _, err = run(capsys, "train", "--resume", "--run-dir", str(rd), "--set", "seed=1")
    assert code == 2 and "--max-minutes" in err  # named among what a resume may change


def test_the_set_help_names_every_train_key(capsys):
    from genzoo.recipes import TRAIN_KEYS

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--max-minutes M" in text
    assert all(key in text.split("the train keys:")[1] for key in TRAIN_KEYS)
    assert {"log_every", "valid_every", "keep", "lr_schedule", "warmup_steps", "max_minutes", "keep_best"} <= set(TRAIN_KEYS)


def test_the_validation_cadence_is_a_train_key(tmp_path, capsys):
    """Validation came every 10 log rows whatever the user wanted (log_every=1: a validation pass every 10 steps)."""
    from genzoo.recipes import apply_sets, load_recipe, new_recipe

    rd = tmp_path / "v"
    code, _, err = run(capsys, "train", "vae", "--steps", "12", "--set", "log_every=2", "--set", "valid_every=6",
                       "--set", "hidden=16", "--run-dir", str(rd), "--no-progress")
    assert code == 0, err
    rows = [json.loads(line) for line in (rd / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "valid_loss" in r] == [6, 12] and len(rows) == 6
    assert json.loads((rd / "run.json").read_text())["recipe"]["train"]["valid_every"] == 6
    code, _, err = run(capsys, "train", "vae", "--steps", "12", "--set", "valid_every=5", "--run-dir", str(tmp_path / "x"))
    assert code == 2 and "valid_every must be a multiple of log_every (10), got 5" in err and not (tmp_path / "x").exists()
    assert apply_sets(new_recipe("vae"), ["valid_every=20"])["train"]["valid_every"] == "20"
    (tmp_path / "r.toml").write_text('[model]\nname = "vae"\n[train]\nvalid_every = 100\n')
    assert load_recipe(tmp_path / "r.toml")["train"]["valid_every"] == 100


def test_a_labelled_folder_names_its_classes_in_the_banner_and_run_json(tmp_path, capsys):
    """Which folder became which label was recorded nowhere (an empty class folder moved every later label)."""
    rng = np.random.default_rng(0)
    for c in ("cat", "dog", "zebra_with_a_very_long_folder_name"):
        (tmp_path / "img" / c).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 256, (6, 6), dtype=np.uint8)).save(tmp_path / "img" / c / f"{i}.png")
    rd = tmp_path / "run"
    code, _, err = run(capsys, "train", "gmm", "--data", str(tmp_path / "img"), "--steps", "2", "--run-dir", str(rd),
                       "--no-progress", "--set", "n_components=2")
    assert code == 0 and "shape (1, 6, 6); 3 classes: 0=cat, 1=dog, 2=zebra_with_a_very...) ->" in err, err
    record = json.loads((rd / "run.json").read_text())
    assert record["classes"] == ["cat", "dog", "zebra_with_a_very_long_folder_name"]
    del record["classes"]  # a run of a genzoo that did not record them: resumed, and recorded then
    (rd / "run.json").write_text(json.dumps(record))
    for command in (["eval", str(rd), "--no-write", "--metrics", "nll"], ["sample", str(rd), "-n", "4"],
                    ["train", "--resume", "--run-dir", str(rd), "--steps", "3", "--no-progress"]):
        code, _, err = run(capsys, *command)
        assert code == 0, (command, err)
    assert json.loads((rd / "run.json").read_text())["classes"] == ["cat", "dog", "zebra_with_a_very_long_folder_name"]
    code, _, err = run(capsys, "train", "gmm", "--steps", "2", "--run-dir", str(tmp_path / "d"), "--no-progress")
    assert code == 0 and "classes" not in err and "classes" not in json.loads((tmp_path / "d" / "run.json").read_text())


def _tiny_run(capsys, rd):
    """A `genzoo train` run in a tenth of a second: checkpoints at steps 1 and 2, no sample grids."""
    assert run(capsys, "train", "vae", "--steps", "2", "--checkpoint-every", "1", "--sample-every", "0", "--set",
               "data.n=64", "--set", "latent_dim=2", "--set", "hidden=[8]", "--run-dir", str(rd), "--no-progress")[0] == 0


def test_eval_rewrites_an_eval_json_holding_an_integer_past_pythons_digit_limit(tmp_path, capsys):
    """eval printed its results, then failed reading the old eval.json ('unexpected ValueError ... a bug in
    genzoo', exit 1): the results just computed were lost."""
    rd = tmp_path / "vae"
    _tiny_run(capsys, rd)
    (rd / "eval.json").write_text('{"huge": ' + "9" * 5000 + "}")
    code, _, err = run(capsys, "eval", str(rd), "--iwae-k", "2", "-n", "50", "--no-progress")
    assert code == 0, err
    assert "huge" not in json.loads((rd / "eval.json").read_text())


def test_a_checkpoint_folder_given_to_sample_or_eval_says_how_to_use_it(tmp_path, capsys):
    rd = tmp_path / "vae"
    _tiny_run(capsys, rd)
    step = rd / "checkpoints" / "step-00000001"
    for command in (["sample", str(step), "-n", "4", "-o", str(tmp_path / "s.png")], ["eval", str(step)]):
        code, _, err = run(capsys, *command)
        assert code == 2 and err.count("\n") == 1, err
        assert f"it is a checkpoint of the run in {rd}" in err and f"copy {rd / 'config.json'} into it" in err


def test_a_recipe_that_is_a_folder_is_named_as_such(tmp_path, capsys):
    """`--config configs` said 'recipe not found: configs', of a folder that is there."""
    code, _, err = run(capsys, "train", "--config", str(tmp_path), "--steps", "1")
    assert code == 2 and err.count("\n") == 1 and f"recipe {tmp_path} is a folder, not a TOML file" in err, err


def test_a_new_run_whose_checkpoints_were_set_aside_after_a_divergence_is_kept_not_removed(tmp_path, capsys):
    """Its only checkpoint set aside as .diverged-step-1, the new run was then removed whole, while the message
    named the folder it set it aside in (r111 #4): it is kept, and the message says what to do; a resume of it says
    why there is nothing to resume rather than start it again from step 0 (r111 #5)."""
    rd = tmp_path / "vae"
    code, _, err = run(capsys, "train", "vae", "--data", "digits", "--set", "lr=0.5", "--set", "hidden=[32]", "--steps",
                       "20", "--checkpoint-every", "1", "--batch-size", "64", "--run-dir", str(rd), "--no-progress")
    assert code == 3 and "set aside as .diverged-step-00000001) (try a smaller lr); " in err, err
    assert err.rstrip().endswith(f"{rd} is kept, but nothing in it can be resumed: start a new run in another --run-dir "
                                 "with a smaller lr or other settings") and "is removed" not in err, err
    assert (rd / "checkpoints" / ".diverged-step-00000001").is_dir() and (rd / "run.json").is_file()
    files = sorted(p.relative_to(rd) for p in rd.rglob("*"))
    code, _, err = run(capsys, "train", "--resume", "--run-dir", str(rd), "--no-progress")
    assert code == 2 and "nothing to resume" in err and ".diverged-step-00000001" in err, err
    assert "stopped before its first checkpoint" not in err and sorted(p.relative_to(rd) for p in rd.rglob("*")) == files


def test_a_resume_that_diverges_before_its_first_checkpoint_is_not_later_restarted_from_step_0(tmp_path, capsys):
    """A finished run of one checkpoint trained further with --resume diverged before its first new checkpoint, and
    its checkpoint was set aside: the next --resume said it 'stopped before its first checkpoint' and started it
    again from step 0, cutting metrics.jsonl back (r111 #5)."""
    rd = tmp_path / "vae"
    assert run(capsys, "train", "vae", "--data", "digits", "--set", "lr=0.5", "--set", "hidden=[32]", "--set",
               "train.keep=1", "--steps", "1", "--checkpoint-every", "1", "--batch-size", "64", "--run-dir", str(rd),
               "--no-progress")[0] == 0
    code, _, err = run(capsys, "train", "--resume", "--run-dir", str(rd), "--steps", "20", "--no-progress")
    assert code == 3 and "set aside as .diverged-step-00000001" in err, err
    rows = (rd / "metrics.jsonl").read_text()
    code, _, err = run(capsys, "train", "--resume", "--run-dir", str(rd), "--steps", "20", "--no-progress")
    assert code == 2 and "stopped before its first checkpoint" not in err, err
    assert (f"nothing to resume: {rd} has no checkpoint left: its training diverged, and the checkpoints it wrote were "
            "set aside as holding the weights that broke its loss (checkpoints/.diverged-step-00000001)") in err, err
    assert "start a new run" in err and (rd / "metrics.jsonl").read_text() == rows
