"""genzoo.eval.metrics.evaluate (which metrics a model admits, one result) and `genzoo compare` (one table)."""

import csv
import json
import math
from pathlib import Path

import pytest
import torch

import genzoo
from genzoo.cli import main
from genzoo.data import load_dataset
from genzoo.errors import ConfigError, DataError
from genzoo.eval.likelihood import likelihood_report, stream_seed
from genzoo.eval.metrics import evaluate, resolve_metrics, summary_row
from genzoo.eval.parzen import parzen_protocol


@pytest.fixture(scope="module")
def ring_models():
    torch.manual_seed(0)  # module-wide: built before the per-test seed, so its weights do not follow the test order
    data = load_dataset("ring", n=2000)
    gmm = genzoo.build("gmm", data_shape=(2,), n_components=8)
    genzoo.fit(gmm, data, steps=30, progress=False, seed=0)
    gan = genzoo.build("gan", data_shape=(2,), hidden=(32, 32))
    genzoo.fit(gan, data, steps=50, progress=False, seed=0)
    return gmm, gan, load_dataset("ring", "test")


def test_metrics_admitted_and_auto(ring_models):
    gmm, gan, test = ring_models
    assert resolve_metrics("auto", gmm, test) == ["nll", "modes"]
    assert resolve_metrics("auto", gan, test) == ["parzen", "modes"]  # a sampler: Parzen instead of a likelihood
    assert resolve_metrics("all", gmm, test) == ["nll", "parzen", "modes"]
    assert resolve_metrics("modes, parzen", gan, test) == ["parzen", "modes"]  # canonical order
    digits = load_dataset("digits", "test")
    vae = genzoo.build("vae", data_shape=(1, 8, 8))
    assert resolve_metrics("all", vae, digits) == ["nll", "parzen", "fid", "kid", "pr", "dc", "is"]


@pytest.mark.parametrize("metrics, needle", [
    ("nll", "no likelihood or bound"), ("fid", "MNIST or digits"), ("bogus", "unknown metric 'bogus': choose"), ("", "no metrics"),
    ("nll,pzrzen", "unknown metric 'pzrzen' \\(did you mean 'parzen'\\?\\)"),
])
def test_metrics_that_do_not_apply_are_one_line_errors(ring_models, metrics, needle):
    _, gan, test = ring_models
    with pytest.raises(ConfigError, match=needle):
        resolve_metrics(metrics, gan, test)


def test_evaluate_uses_the_same_parzen_protocol_and_samples(ring_models):
    _, gan, test = ring_models
    out = evaluate(gan, {"name": "ring"}, metrics="parzen,modes", n_samples=1500, seed=3, progress=False)
    assert out["model"] == "gan" and out["metrics"] == ["parzen", "modes"]
    (row,) = out["likelihood"]["rows"]  # a sampler's only likelihood figure, labelled as an estimate
    assert row["kind"] == "parzen" and row["nats"] == -out["parzen"]["ll"] and row["bits_per_dim"] is None
    g = torch.Generator().manual_seed(stream_seed(3, "samples"))  # evaluate's samples: a stream of seed 3's own
    gan.eval()
    samples = torch.cat([gan.sample(1000, generator=g), gan.sample(500, generator=g)])
    ref = parzen_protocol(samples, load_dataset("ring", "valid").x, test.x, progress=False)
    assert out["parzen"]["ll"] == pytest.approx(ref["ll"]) and out["parzen"]["sigma"] == ref["sigma"]
    assert sum(out["modes"]["counts"]) == round(out["modes"]["high_quality"] * 1500)


def test_mode_coverage_scores_the_protocols_2500_samples_and_says_so(ring_models):
    """eval scored modes on all --n-samples (10,000 by default), where VEEGAN, PacGAN and `genzoo bench modes` score
    2,500; one high-quality sample captures a mode, so more samples capture more modes (5.7 -> 7.55 of 8)."""
    from genzoo.eval.metrics import draw_finite, format_result
    from genzoo.eval.modes import mode_coverage

    gmm, _, test = ring_models
    out = evaluate(gmm, {"name": "ring"}, metrics="modes", n_samples=4000, seed=5, progress=False)
    assert out["modes"]["n_samples"] == 2500 and sum(out["modes"]["counts"]) <= 2500
    first = draw_finite(gmm, 4000, stream_seed(5, "samples"))[:2500]  # evaluate's draw, its first 2,500
    ref = mode_coverage(first, test.density.centres, test.density.std)
    assert out["modes"]["counts"] == ref["counts"] and out["modes"]["high_quality"] == ref["high_quality"]
    assert "reverse KL" in (line := format_result(out).splitlines()[-1]) and line.endswith("(2,500 samples)")
    few = evaluate(gmm, {"name": "ring"}, metrics="modes", n_samples=100, seed=5, progress=False)
    assert few["modes"]["n_samples"] == 100 and format_result(few).endswith("(100 samples)")


def test_summary_row_prefers_exact_then_iwae_then_elbo():
    rows = [{"kind": "elbo", "nats": 3.0, "bits_per_dim": 1.0}, {"kind": "iwae-50", "nats": 2.0, "bits_per_dim": 0.5}]
    assert summary_row({"likelihood": {"rows": rows}})["nll_kind"] == "iwae-50"
    assert summary_row({"likelihood": {"rows": rows[:1]}})["nll"] == 3.0
    exact = [*rows, {"kind": "exact", "nats": 1.0, "bits_per_dim": 0.2}]
    assert summary_row({"likelihood": {"rows": exact}})["nll_kind"] == "exact"
    assert summary_row({})["nll"] is None and summary_row({})["parzen_ll"] is None


def _ring_runs(tmp_path) -> list[str]:
    """A GMM run and a GAN run of 30 steps on the ring, through the CLI."""
    runs = []
    for model, extra in (("gmm", ["--set", "n_components=8"]), ("gan", ["--set", "hidden=[32,32]"])):
        rd = tmp_path / model
        assert main(["train", model, "--data", "ring", "--steps", "30", "--run-dir", str(rd), "--no-progress", *extra]) == 0
        runs.append(str(rd))
    return runs


def test_cli_compare_writes_markdown_and_csv_and_reuses_eval_json(tmp_path, capsys, monkeypatch):
    runs = _ring_runs(tmp_path)
    capsys.readouterr()
    out_prefix = tmp_path / "table.md"  # -o table.md: table.md and table.csv (not table.md.md)
    assert main(["compare", *runs, "--n-samples", "1000", "-o", str(out_prefix), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "| NLL nats (kind, space) |" in printed and "(exact, continuous)" in printed and "Parzen LL nats" in printed
    md = (tmp_path / "table.md").read_text()
    assert md.strip() == printed.strip()
    with open(tmp_path / "table.csv") as f:
        recs = list(csv.DictReader(f))
    assert [r["model"] for r in recs] == ["gmm", "gan"]
    assert recs[0]["nll_kind"] == "exact" and recs[1]["nll"] == "" and float(recs[1]["parzen_ll"]) < 10
    assert json.loads((tmp_path / "gan" / "eval.json").read_text())["metrics"] == ["parzen", "modes"]

    assert not (tmp_path / "table.md.md").exists()
    import genzoo.eval.metrics

    evaluated, evaluate = [], genzoo.eval.metrics.evaluate

    def counted(model, *a, **k):
        evaluated.append(model.name)
        return evaluate(model, *a, **k)

    monkeypatch.setattr("genzoo.eval.metrics.evaluate", counted)
    assert main(["compare", *runs, "--n-samples", "1000", "--no-write", "--no-progress"]) == 0
    assert "(exact, continuous)" in capsys.readouterr().out and evaluated == []  # same flags, same weights: reused
    assert main(["compare", *runs, "--n-samples", "1000", "-n", "500", "--no-write", "--no-progress"]) == 0
    assert evaluated == ["gmm", "gan"]  # -n changes the results: evaluated again
    assert main(["compare", *runs, "--n-samples", "1000", "-n", "500", "--batch-size", "7", "--no-write", "--no-progress"]) == 0
    assert evaluated == ["gmm", "gan"] * 2  # so may the batches (the Monte Carlo draws follow them)
    evaluated[2:] = []
    capsys.readouterr()
    assert main(["train", "--resume", "--run-dir", runs[0], "--steps", "40", "--no-progress"]) == 0
    assert main(["compare", *runs, "--n-samples", "1000", "--no-write", "--no-progress"]) == 0
    assert evaluated == ["gmm", "gan", "gmm"]  # the gmm trained further: its cached result is stale
    (tmp_path / "gan" / "model.safetensors").unlink()  # as while training on: scored from its newest checkpoint
    assert main(["compare", runs[1], "--n-samples", "1000", "-o", str(tmp_path / "t2"), "--no-progress"]) == 0
    assert main(["compare", runs[1], "--n-samples", "1000", "-o", str(tmp_path / "t2"), "--no-progress"]) == 0
    assert evaluated == ["gmm", "gan", "gmm"]  # its last checkpoint holds the final weights: the result is theirs
    # what `genzoo eval` wrote is reused too, however the metrics are spelled; compare used to redo it and write over it
    assert main(["eval", runs[0], "--metrics", "parzen,nll", "--n-samples", "1000", "--no-progress"]) == 0
    written = (tmp_path / "gmm" / "eval.json").read_bytes()
    assert main(["compare", runs[0], "--metrics", "nll, parzen", "--n-samples", "1000", "-o", str(tmp_path / "t3"),
                 "--no-progress"]) == 0
    assert evaluated == ["gmm", "gan", "gmm", "gmm"] and (tmp_path / "gmm" / "eval.json").read_bytes() == written

    def read_only(folder, flag):
        if Path(folder).resolve() != tmp_path.resolve():  # the runs' folders (the table's, -o's, is checked too)
            raise genzoo.errors.WriteError(f"{flag} {folder}: cannot write there (Read-only file system)")

    monkeypatch.setattr("genzoo.io.check_writable", read_only)  # a run on a read-only disk: its cache is enough
    assert main(["compare", runs[0], "--metrics", "nll,parzen", "--n-samples", "1000", "-o", str(tmp_path / "t4"),
                 "--no-progress"]) == 0 and (tmp_path / "t4.md").is_file()
    monkeypatch.undo()
    monkeypatch.setattr("genzoo.eval.metrics.evaluate", counted)
    old = json.loads(written)  # what an older genzoo, whose metrics changed since, wrote: evaluated again
    (tmp_path / "gmm" / "eval.json").write_text(json.dumps({**old, "asked": {**old["asked"], "metrics_version": 1}}))
    assert main(["compare", runs[0], "--metrics", "nll,parzen", "--n-samples", "1000", "--no-write", "--no-progress"]) == 0
    assert evaluated[-2:] == ["gmm", "gmm"]


def test_compare_refuses_an_unwritable_eval_json_before_any_work_and_reads_past_a_corrupt_one(tmp_path, capsys):
    """compare evaluated every run, then failed on one run's eval.json: no table, and the others rewritten."""
    runs = _ring_runs(tmp_path)
    (tmp_path / "gan" / "eval.json").mkdir()  # an eval.json that cannot be written (a read-only run, for root)
    capsys.readouterr()
    assert main(["compare", *runs, "--metrics", "nll", "-o", str(tmp_path / "t"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "eval.json is not a file; --no-write evaluates without writing it" in err and err.count("\n") == 1
    assert not (tmp_path / "gmm" / "eval.json").exists() and not (tmp_path / "t.md").exists()
    assert main(["eval", runs[1], "--metrics", "parzen", "--no-progress"]) == 2  # eval too, before the work
    (tmp_path / "gan" / "eval.json").rmdir()
    (tmp_path / "gmm" / "eval.json").write_text("{broken")
    assert main(["compare", runs[0], "--metrics", "nll", "-o", str(tmp_path) + "/", "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert "corrupt evaluation file" in err and "evaluating again" in err
    assert json.loads((tmp_path / "gmm" / "eval.json").read_text())["metrics"] == ["nll"]
    assert (tmp_path / "compare.md").is_file() and (tmp_path / "compare.csv").is_file()  # -o DIR/: DIR/compare.*
    assert main(["eval", runs[0], "--metrics", "auto,nll", "--no-write"]) == 2
    assert "'auto' stands alone" in capsys.readouterr().err


def test_cli_compare_leaves_a_metric_a_run_does_not_admit_blank(tmp_path, capsys):
    runs = _ring_runs(tmp_path)
    capsys.readouterr()
    # runs named before and after the options; the GAN has no likelihood: a blank cell and a note, not an abort
    assert main(["compare", runs[0], "--metrics", "nll", "--no-write", runs[1]]) == 0
    out, err = capsys.readouterr()
    gmm_row, gan_row = out.strip().splitlines()[2:4]  # (the caption below the table after a blank line)
    assert "(exact, continuous)" in gmm_row and gan_row.endswith("| gan | ring |  |  |")  # NLL, bits/dim blank
    assert f"{runs[1]}: no nll: gan has no likelihood or bound" in err and "gmm" not in err
    assert main(["eval", runs[0], "--metrics", "nll", "--no-progress"]) == 0
    kept = (tmp_path / "gmm" / "eval.json").read_bytes()
    capsys.readouterr()
    assert main(["compare", *runs, "--metrics", "fid", "-o", str(tmp_path / "t")]) == 2  # nothing asked applies
    assert "none of the metrics asked (fid) applies" in capsys.readouterr().err
    assert (tmp_path / "gmm" / "eval.json").read_bytes() == kept and not (tmp_path / "gan" / "eval.json").exists()
    assert main(["eval", runs[1], "--metrics", "nll"]) == 2  # one run, one command: eval still refuses
    assert main(["compare", runs[0], "--metrics", "bogus", "--no-write"]) == 2  # an unknown name is an error


def test_feature_metrics_compute_only_what_is_asked(tmp_path, monkeypatch):
    from genzoo.eval import features

    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path / "cache"))
    real = load_dataset("digits", "test").x
    fake = (real + 0.3 * torch.randn(real.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    full = features.feature_metrics(fake, "digits", kid_subset_size=100, progress=False)
    calls = []
    monkeypatch.setattr(features, "prdc", lambda *a: calls.append(1) or {})
    monkeypatch.setattr(features, "kid", lambda *a: calls.append(2) or (0.0, 0.0))
    part = features.feature_metrics(fake, "digits", which=["fid", "is"], progress=False)
    assert calls == [] and part["fid"] == full["fid"] and part["is"] == full["is"]
    assert not {"kid", "precision", "recall", "density", "coverage"} & set(part)
    assert part["class_histogram"] == full["class_histogram"]
    with pytest.raises(ConfigError, match="which must name"):
        features.feature_metrics(fake, "digits", which=["fd"], progress=False)


def test_compare_evaluates_again_after_the_feature_classifier_changes(tmp_path, capsys, monkeypatch):
    """compare reused an eval.json's FID and precision after the classifier was retrained: its cache key held the
    run's weights, not the classifier's."""
    import genzoo.eval.metrics
    from genzoo.eval import features

    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path / "cache"))
    rd = tmp_path / "vae"
    assert main(["train", "vae", "--steps", "5", "--run-dir", str(rd), "--no-progress", "--set", "latent_dim=2"]) == 0
    args = ["compare", str(rd), "--metrics", "fid,pr", "--n-samples", "50", "-o", str(tmp_path / "t"), "--no-progress"]
    assert main(args) == 0
    shipped = "digits " + features._weights_sha256("digits")[:16]
    assert json.loads((rd / "eval.json").read_text())["asked"]["classifier"] == shipped
    evaluated, evaluate = [], genzoo.eval.metrics.evaluate
    monkeypatch.setattr("genzoo.eval.metrics.evaluate", lambda model, *a, **k: evaluated.append(1) or evaluate(model, *a, **k))
    assert main(args) == 0 and evaluated == []  # the same classifier: reused
    monkeypatch.setattr(features, "_weights_sha256", lambda name: "f" * 64)  # a retrained classifier
    capsys.readouterr()
    assert main(args) == 0 and evaluated == [1]  # evaluated again ...
    assert json.loads((rd / "eval.json").read_text())["asked"]["classifier"] == "digits " + "f" * 16  # ... and stored
    assert "kept" not in capsys.readouterr().err
    assert main(args) == 0 and evaluated == [1]  # then reused
    assert main(["eval", str(rd), "--metrics", "nll", "--no-write", "--no-progress"]) == 0  # no feature metric: no hash
    from genzoo.cli import _compare_key, _parser

    assert "classifier" not in _compare_key(str(rd), _parser().parse_args(["eval", str(rd), "--metrics", "nll,parzen"]))


def test_compare_table_escapes_a_bar_in_a_run_name_and_gives_parzen_in_thousandths():
    from genzoo.eval.compare import compare_table

    res = {"model": "gan", "dataset": "ring", "parzen": {"ll": 2.71828, "stderr": 0.01234, "sigma": 0.01,
                                                         "sigma_at_edge": False}, "metrics": ["parzen"]}
    md = compare_table([("runs/a|b", res)]).markdown
    assert "| runs/a\\|b | gan | ring | 2.718 +- 0.012 |" in md


def test_compare_gives_the_modes_reverse_kl():
    """The modes' reverse KL, which eval prints and the report shows, was in no compare column."""
    from genzoo.eval.compare import compare_table

    res = {"model": "gan", "dataset": "ring", "metrics": ["modes"],
           "modes": {"modes": 7, "n_modes": 8, "high_quality": 0.9, "reverse_kl": 0.1234, "counts": []}}
    table = compare_table([("r", res)])
    assert "modes' reverse KL" in table.header and "| 7/8 | 0.900 | 0.123 |" in table.markdown
    assert "reverse_kl" in table.csv.splitlines()[0] and "0.1234" in table.csv


def test_cli_compare_bad_input(tmp_path, capsys):
    assert main(["compare", str(tmp_path / "nope")]) == 2
    assert "not a genzoo run" in capsys.readouterr().err
    capsys.readouterr()
    assert main(["compare", "a", "b", "a"]) == 2
    assert capsys.readouterr().err.strip() == "genzoo: error: a run is named twice: a"
    assert main(["compare", "a", "./a/"]) == 2  # the same run named twice
    assert capsys.readouterr().err.strip() == "genzoo: error: a run is named twice: a (as ./a/)"


def test_feature_metrics_of_a_digits_model_through_the_cli(tmp_path, capsys, monkeypatch):
    """Only what is asked is computed, and the figures show the training: fid > 0, IS in [1, 10] and shares in
    [0, 1] hold for any model, an untrained one too (audit 134 F7). After these 100 steps: FID 90.1, IS 4.79,
    coverage 0.293, recall 0.167; after 1 step: FID 255.0, IS 1.05, coverage 0.033, recall 0.0 (100 steps that
    never step the optimizer: FID 248.9)."""
    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path / "cache"))
    rd = tmp_path / "vae"
    assert main(["train", "vae", "--steps", "100", "--run-dir", str(rd), "--no-progress", "--set", "latent_dim=4"]) == 0
    capsys.readouterr()
    assert main(["eval", str(rd), "--metrics", "fid,kid,pr,dc,is", "--n-samples", "600", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "FID" in out and "class histogram" in out and "NLL" not in out  # only what was asked
    f = json.loads((rd / "eval.json").read_text())["features"]
    assert f["classifier"] == "digits" and f["n_fake"] == 600 and f["n_real"] == 300
    assert 0 <= f["precision"] <= 1 and abs(sum(f["class_histogram"]) - 1) < 1e-6
    assert f["fid"] < 150 and f["is"] > 3, f  # 90.1 and 4.79 here; untrained 255.0 and 1.05
    assert f["coverage"] > 0.15 and f["recall"] > 0.05, f  # 0.293 and 0.167 here; untrained 0.033 and 0.0
    assert main(["compare", str(rd), "--metrics", "fid,pr", "--no-write", "--no-progress", "--n-samples", "600"]) == 0
    table = capsys.readouterr().out
    assert "| FID |" in table and "| precision |" in table and "Parzen" not in table
    assert "KID" not in table and "density" not in table  # only what was asked
    assert main(["eval", str(rd), "--metrics", "is", "--n-samples", "600", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "IS " in out and "class histogram" in out and "FID" not in out and "precision" not in out
    assert set(json.loads((rd / "eval.json").read_text())["features"]) & {"fid", "kid", "precision"} == set()


def test_evaluation_sizes_and_data_spec_are_checked():
    from genzoo.eval.likelihood import likelihood_report

    model = genzoo.build("gmm", data_shape=(2,), n_components=8)
    ring = load_dataset("ring", "test", n=200)
    with pytest.raises(ConfigError, match=r"n and batch_size must be >= 1.*got \(-5,"):
        likelihood_report(model, ring, n=-5)  # not "all but the last 5"
    with pytest.raises(ConfigError, match="n and batch_size must be >= 1"):
        evaluate(model, {"name": "ring"}, n=0)
    with pytest.raises(ConfigError, match="a dict with a 'name'"):
        evaluate(model, "ring")
    assert likelihood_report(model, ring, n=5, progress=False)["n"] == 5
    vae = genzoo.build("vae", data_shape=(1, 8, 8), latent_dim=2, hidden=(8,))
    with pytest.raises(ConfigError, match=r"at least 2 of each, got n \(-n\) 1"):  # was: 'n_real must be ...'
        evaluate(vae, {"name": "digits"}, metrics="fid", n=1, n_samples=50, progress=False)


def test_feature_metric_sizes_are_checked_before_any_work(tmp_path, monkeypatch):
    """--metrics nll,pr --n-samples 5 computed the IWAE bound first (minutes on MNIST), then failed naming a k the
    CLI has no flag for; -n 3 --metrics fid failed on that k although FID takes 2 images."""
    import genzoo.eval.metrics as metrics_module

    vae = genzoo.build("vae", data_shape=(1, 8, 8), latent_dim=2, hidden=(8,))
    calls = []
    with monkeypatch.context() as m:
        m.setattr(metrics_module, "likelihood_report", lambda *a, **k: calls.append("likelihood") or {})
        m.setattr(metrics_module, "draw", lambda *a, **k: calls.append("draw"))
        with pytest.raises(ConfigError, match=r"k = 5 nearest neighbours: they need more than 5 samples and real "
                                              r"images, got n_samples \(--n-samples\) 5$"):
            evaluate(vae, {"name": "digits"}, metrics="nll,pr", n_samples=5, iwae_k=2000, progress=False)
        with pytest.raises(ConfigError, match=r"got n \(-n\) 5$"):
            evaluate(vae, {"name": "digits"}, metrics="nll,dc", n=5, n_samples=50, progress=False)
        with pytest.raises(ConfigError, match=r"got n_samples \(--n-samples\) 3 and n \(-n\) 4$"):
            evaluate(vae, {"name": "digits"}, metrics="fid,pr", n=4, n_samples=3, progress=False)
    assert calls == []  # refused before the samples and the likelihood bounds
    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path / "cache"))
    f = evaluate(vae, {"name": "digits"}, metrics="fid", n=3, n_samples=3, progress=False)["features"]
    assert (f["n_fake"], f["n_real"]) == (3, 3) and f["fid"] > 0


def _features_result(**features) -> dict:
    f = {"classifier": "digits", "classifier_accuracy": 0.98, "n_fake": 600, "n_real": 300, "fid": 1.0, "kid": 0.1,
         "kid_std": 0.01, "kid_subsets": 100, "kid_subset_size": 150, "precision": 0.5, "recall": 0.5,
         "is": 9.0, "is_std": 0.1, "is_splits": 2,
         "class_histogram": [0.1] * 10}
    return {"split": "test", "features": {**f, **features}}


def test_eval_prints_kid_and_is_spreads_as_such_and_notes_few_samples():
    """KID's and IS's +- read as standard errors (the likelihoods' +- are); FID of 6 samples came without a caveat."""
    from genzoo.eval.metrics import format_result

    text = format_result(_features_result())
    assert "KID 0.10000 (sd 0.01000 over 100 subsets of 150)" in text and "IS 9.000 (sd 0.100 over 2 parts)" in text
    assert "+-" not in text
    assert "(only 600 samples, fewer than 1,000: FID is biased high, KID and the k-NN figures noisy;" in text
    older = _features_result(n_fake=2000)
    del older["features"]["kid_subsets"]  # as an older genzoo stored it
    text = format_result(older)
    assert "KID 0.10000 (sd 0.01000 over subsets)" in text and "only" not in text
    few_is = _features_result(n_fake=600, is_splits=1)
    for key in ("fid", "kid", "kid_std", "kid_subsets", "kid_subset_size", "precision", "recall"):
        del few_is["features"][key]
    text = format_result(few_is)  # IS alone has its own note
    assert "biased low below 1,000" in text and "only 600 samples" not in text


def test_parzen_sigma_grid_and_the_split_it_is_chosen_on(ring_models, tmp_path, capsys):
    """The default grid (0.1..1, for images in [0, 1]) is far too wide for the ring's std 0.01: its sigma sits at the
    edge and says so; --parzen-sigmas gives a grid that holds the best width. With split=valid, sigma is chosen on
    the training split, never on the points scored."""
    gmm, _, _ = ring_models  # EM fits the ring closely
    wide = evaluate(gmm, {"name": "ring"}, metrics="parzen", n_samples=1000, progress=False)
    assert wide["parzen"]["sigma"] == pytest.approx(0.1) and wide["parzen"]["sigma_at_edge"]
    fine = evaluate(gmm, {"name": "ring"}, metrics="parzen", n_samples=1000, parzen_sigmas=[0.0025, 0.005, 0.01, 0.02, 0.04],
                    progress=False)
    assert not fine["parzen"]["sigma_at_edge"] and fine["parzen"]["ll"] > wide["parzen"]["ll"] + 1 and set(fine["parzen"]["valid_ll"]) == {"0.0025", "0.005", "0.01", "0.02", "0.04"}
    one = evaluate(gmm, {"name": "ring"}, metrics="parzen", n_samples=1000, parzen_sigmas=[0.01], progress=False)
    assert not one["parzen"]["sigma_at_edge"]  # one sigma given: no grid to widen
    on_valid = evaluate(gmm, {"name": "ring"}, metrics="parzen", split="valid", n_samples=1000, seed=3, progress=False)
    g = torch.Generator().manual_seed(stream_seed(3, "samples"))
    gmm.eval()
    ref = parzen_protocol(gmm.sample(1000, generator=g), load_dataset("ring", "train").x, load_dataset("ring", "valid").x,
                          progress=False)
    assert on_valid["parzen"]["ll"] == pytest.approx(ref["ll"]) and on_valid["parzen"]["sigma"] == ref["sigma"]
    assert on_valid["parzen"]["sigma_chosen_on"] == "train" and wide["parzen"]["sigma_chosen_on"] == "valid"
    row = summary_row(wide)
    assert row["parzen_sigma_at_edge"] is True
    from genzoo.eval.compare import compare_table
    assert "(sigma at the grid's edge)" in compare_table([("r", wide)]).markdown
    assert "(sigma at the grid's edge)" not in compare_table([("r", {**wide, "parzen": {**wide["parzen"], "sigma_at_edge": False}})]).markdown
    with pytest.raises(DataError, match="finite sigmas"):
        evaluate(gmm, {"name": "ring"}, metrics="parzen", parzen_sigmas=[], progress=False)
    rd = tmp_path / "gmm"
    assert main(["train", "gmm", "--data", "ring", "--steps", "30", "--set", "n_components=8", "--run-dir", str(rd),
                 "--no-progress"]) == 0
    assert main(["eval", str(rd), "--metrics", "nll,parzen", "--n-samples", "500", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "-LL (Parzen, raw)" in out and "widen it with --parzen-sigmas" in out
    assert main(["eval", str(rd), "--metrics", "parzen", "--n-samples", "500", "--no-progress",
                 "--parzen-sigmas", "0.002,0.005,0.01,0.02"]) == 0
    assert "widen it" not in capsys.readouterr().out
    assert json.loads((rd / "eval.json").read_text())["parzen"]["valid_ll"].keys() == {"0.002", "0.005", "0.01", "0.02"}
    for bad in ("0,1", "a,b", "inf", ","):
        with pytest.raises(SystemExit):
            main(["eval", str(rd), "--parzen-sigmas", bad])
    assert "--parzen-sigmas" in capsys.readouterr().err


def test_a_diverged_model_is_refused_not_scored(ring_models):
    gmm, gan, _ = ring_models
    import copy

    broken = copy.deepcopy(gmm)
    broken.means[0, 0] = float("nan")
    with pytest.raises(DataError, match="NaN or infinite weights.*means"):
        evaluate(broken, {"name": "ring"}, progress=False)
    digits_gan = genzoo.build("gan", data_shape=(1, 8, 8), hidden=(16,))
    real_sample = digits_gan.sample

    def some_inf(n, generator=None):
        x = real_sample(n, generator=generator)
        x[:3] = float("inf")  # clipping into [0, 1] would hide them
        return x

    digits_gan.sample = some_inf
    with pytest.raises(DataError, match="3 of 600 samples .* NaN or infinite"):
        evaluate(digits_gan, {"name": "digits"}, metrics="parzen", n_samples=600, progress=False)


def test_metric_helpers_check_their_arguments():
    from genzoo.eval.fid import frechet_distance, kid
    from genzoo.eval.likelihood import to_bits_per_dim
    from genzoo.eval.modes import mode_coverage
    from genzoo.eval.prdc import knn_radii, prdc

    with pytest.raises(ConfigError, match="dimensions >= 1"):
        to_bits_per_dim(10.0, 0, "binarized", None)
    with pytest.raises(ConfigError, match="dimensions >= 1"):
        to_bits_per_dim(10.0, -1, "binarized", None)
    eye, zero = torch.eye(3), torch.zeros(3)
    with pytest.raises(DataError, match="positive semi-definite"):
        frechet_distance(zero, -eye, zero, eye)  # would be 0.0
    with pytest.raises(DataError, match="NaN or infinite"):
        frechet_distance(zero, eye * float("inf"), zero, eye)
    assert frechet_distance(zero, eye - 1e-9 * eye, zero, eye) == pytest.approx(0.0, abs=1e-6)  # round-off is fine
    r = torch.randn(20, 4)
    with pytest.raises(DataError, match="whole numbers"):
        kid(r, r, subsets=2.5)
    with pytest.raises(DataError, match="whole numbers"):
        prdc(r, r, k=2.5)
    with pytest.raises(DataError, match="whole numbers"):
        knn_radii(r, 2.0)
    with pytest.raises(DataError, match="chunk >= 1"):
        prdc(r, r, chunk=0)
    centres = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    with pytest.raises(DataError, match="one std or one per mode"):
        mode_coverage(torch.zeros(4, 2), centres, torch.tensor([0.01, 0.1, 0.3]))
    assert mode_coverage([[0.0, 0.0], [1.0, 0.01]], centres, 0.1)["modes"] == 2  # a nested list is taken as samples


def test_a_bernoulli_decoder_on_grey_pixels_is_labelled_a_cross_entropy():
    """M2 or a Bernoulli VAE trained on dequantized digits was reported in the 'dequantized' space, with D ln 256
    added, as if a mass on {0,1}^D were a density on [0,1]^D."""
    from genzoo.eval.likelihood import format_table, likelihood_report

    vae = genzoo.build("vae", data_shape=(1, 8, 8), latent_dim=2, hidden=(16,))
    grey = load_dataset("digits", "test", dequantize=True, n=50)
    rep = likelihood_report(vae, grey, iwae_k=2, progress=False)
    assert rep["space"] == "bernoulli-on-grey" and "not a likelihood" in format_table(rep)
    elbo = rep["rows"][0]
    assert elbo["bits_per_dim"] == pytest.approx(elbo["nats"] / (64 * math.log(2)))  # no D ln(levels) added
    binary = likelihood_report(vae, load_dataset("digits", "test", binarize=True, n=50), iwae_k=2, progress=False)
    assert binary["space"] == "binarized" and "not a likelihood" not in format_table(binary)
    gaussian = genzoo.build("vae", data_shape=(1, 8, 8), latent_dim=2, hidden=(16,), likelihood="gaussian")
    assert likelihood_report(gaussian, grey, iwae_k=2, progress=False)["space"] == "dequantized"
    m2 = genzoo.build("ssvae", data_shape=(1, 8, 8), latent_dim=2, hidden=(8,), labels=10)
    assert likelihood_report(m2, grey, iwae_k=2, progress=False)["space"] == "bernoulli-on-grey"


def test_the_space_follows_the_models_support_as_well_as_the_data():
    """A density fitted to binarized pixels was labelled 'binarized' (a mass on {0,1}^D) and printed negative NLLs
    that compare ranked above the Bernoulli VAE's; a Bernoulli VAE on data already binary was 'discrete-as-real'."""
    from genzoo.data import Dataset
    from genzoo.eval.likelihood import format_table, likelihood_report

    binarized = load_dataset("digits", "test", binarize=True, n=50)
    for density in (genzoo.build("gmm", data_shape=(1, 8, 8), n_components=2),
                    genzoo.build("vae", data_shape=(1, 8, 8), latent_dim=2, hidden=(16,), likelihood="gaussian")):
        if isinstance(density, genzoo.base.Density):
            density.setup(load_dataset("digits", binarize=True).transformed(torch.Generator().manual_seed(0)),
                          torch.Generator().manual_seed(0))
        rep = likelihood_report(density, binarized, iwae_k=2, progress=False)
        assert rep["space"] == "discrete-as-real" and "not a likelihood of the discrete data" in format_table(rep)
    already_binary = Dataset("bits", "test", binarized.transformed(torch.Generator().manual_seed(0)), None, levels=256)
    assert already_binary.space == "discrete-as-real"  # what the data say; the Bernoulli decoder makes it a mass
    vae = genzoo.build("vae", data_shape=(1, 8, 8), latent_dim=2, hidden=(16,))
    assert likelihood_report(vae, already_binary, iwae_k=2, progress=False)["space"] == "binarized"


def test_the_parzen_note_appears_only_beside_likelihood_rows_of_another_space(ring_models):
    from genzoo.eval.likelihood import format_table

    gmm, gan, _ = ring_models
    sampler = evaluate(gan, {"name": "ring"}, metrics="parzen", n_samples=500, progress=False)
    assert "Parzen (raw)" not in format_table(sampler["likelihood"])  # no rows above it to contrast with
    vae = genzoo.build("vae", data_shape=(1, 8, 8), latent_dim=2, hidden=(16,))
    both = evaluate(vae, {"name": "digits", "binarize": True}, metrics="nll,parzen", n_samples=500, iwae_k=2, n=50,
                    progress=False)
    assert "not in the model's 'binarized' space" in format_table(both["likelihood"])


def test_samples_of_a_dequantizing_model_are_scored_on_the_datas_levels():
    """(v + u) / 17 against images stored as v / 16: the scales' shift alone raised a perfect sampler's FID on
    the digits from 2.35 to 3.32."""
    from genzoo.data import load_spec
    from genzoo.eval.metrics import draw

    model = genzoo.build("gmm", data_shape=(1, 8, 8), n_components=2)
    train = load_spec({"name": "digits", "dequantize": True}, "train")
    model.setup(train.transformed(torch.Generator().manual_seed(0)), torch.Generator().manual_seed(0))
    test = load_spec({"name": "digits", "dequantize": True}, "test")
    x = draw(model, 500, 0, test)
    assert torch.equal(x * 16, (x * 16).round()) and len(torch.unique(x)) > 2  # on the 17 levels, not a constant
    raw = draw(model, 500, 0, load_spec({"name": "digits"}, "test"))  # the same draws, not put on the levels
    assert torch.equal(x, torch.clamp(torch.floor(raw * 17), max=16) / 16)


def test_compare_keeps_an_evaluation_of_other_settings_and_checks_every_run_first(tmp_path, capsys, monkeypatch):
    """compare wrote its quick result over a run's eval.json of other settings (a full evaluation lost to -n 20),
    evaluated the first runs and then stopped on a later typo with nothing stored, and wrote ./compare.md over a
    user's own file without -o."""
    import json

    runs = _ring_runs(tmp_path)
    gmm = Path(runs[0])
    assert main(["eval", runs[0], "--no-progress"]) == 0  # the user's evaluation: nll + modes, the whole split
    before = (gmm / "eval.json").read_text()
    capsys.readouterr()
    assert main(["compare", runs[0], "--metrics", "modes", "-n", "20", "-o", str(tmp_path / "t"), "--no-progress"]) == 0
    assert (gmm / "eval.json").read_text() == before  # kept
    assert "holds an evaluation of other settings, kept" in capsys.readouterr().err
    (gmm / "eval.json").unlink()
    assert main(["compare", runs[0], str(tmp_path / "typo"), "--metrics", "modes", "-o", str(tmp_path / "t"),
                 "--no-progress"]) == 2
    assert not (gmm / "eval.json").exists() and "typo" in capsys.readouterr().err  # refused before any work
    monkeypatch.chdir(tmp_path)
    (tmp_path / "compare.md").write_text("my notes\n")
    assert main(["compare", runs[0], "--metrics", "modes", "--no-progress"]) == 2
    assert "compare.md exists here: -o compare replaces them" in capsys.readouterr().err
    assert (tmp_path / "compare.md").read_text() == "my notes\n"
    assert main(["compare", runs[0], "--metrics", "modes", "-o", "compare", "--no-progress"]) == 0
    table = (tmp_path / "compare.md").read_text()
    assert table.startswith("| run") and "Higher is better: modes" in table and "Scored on the test split" in table
    assert json.loads((gmm / "eval.json").read_text())["metrics"] == ["modes"]  # none there: this one is stored
    assert main(["compare", runs[0], "--no-write", "-o", "x"]) == 2


def test_compare_replaces_only_what_its_result_covers_and_survives_damaged_records(tmp_path, capsys, monkeypatch):
    """An `eval` (metrics auto) under `compare` (all) was kept and compare evaluated it again every time; a folder
    ./compare/ made the default output compare/compare.md, over a user's file; damaged records were 'a bug'."""
    import json

    runs = _ring_runs(tmp_path)
    gmm = Path(runs[0])
    assert main(["eval", runs[0], "--n-samples", "500", "--no-progress"]) == 0
    assert main(["compare", runs[0], "--n-samples", "500", "-o", str(tmp_path / "t"), "--no-progress"]) == 0
    stored = json.loads((gmm / "eval.json").read_text())
    assert stored["asked"]["metrics"] == "all"  # it holds everything the eval had, and more: replaced
    monkeypatch.chdir(tmp_path)
    (tmp_path / "compare").mkdir()
    (tmp_path / "compare" / "compare.md").write_text("mine\n")
    assert main(["compare", runs[0], "--n-samples", "500", "--no-progress"]) == 0
    assert (tmp_path / "compare" / "compare.md").read_text() == "mine\n" and (tmp_path / "compare.md").is_file()
    (gmm / "eval.json").write_text(json.dumps({**stored, "asked": "x"}))
    (gmm / "pictures.json").write_text(json.dumps({"samples.png": 5}))
    capsys.readouterr()
    assert main(["compare", runs[0], "--n-samples", "500", "-o", str(tmp_path / "u"), "--no-progress"]) == 0
    assert main(["report", runs[0]]) == 0


def test_compare_stores_what_it_can_checks_data_first_and_names_each_runs_data(tmp_path, capsys, monkeypatch):
    """compare lost its table when an eval.json judged kept before the work turned out replaceable and unwritable;
    found a later run's missing data only after evaluating the earlier runs; named runs on rings of std 0.01 and
    0.05 both 'ring', under one "lower is better"; gave no NLL standard error; and its caption claimed -n 1000 of a
    split of 300."""
    import json

    import genzoo.eval.metrics
    import genzoo.io

    runs = _ring_runs(tmp_path)
    gmm = Path(runs[0])
    assert main(["eval", runs[0], "--n-samples", "500", "--no-progress"]) == 0  # metrics auto: compare's all covers it
    real_write = genzoo.io.atomic_write_json

    def read_only(path, obj, own=False):
        if Path(path) == gmm / "eval.json":
            raise genzoo.errors.WriteError(f"cannot write {path}: Read-only file system")
        return real_write(path, obj, own)

    monkeypatch.setattr(genzoo.io, "atomic_write_json", read_only)
    capsys.readouterr()
    assert main(["compare", runs[0], "--n-samples", "500", "-o", str(tmp_path / "t"), "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert (tmp_path / "t.md").is_file() and "Read-only file system: this table's figures for it are not stored" in err
    monkeypatch.undo()

    np = pytest.importorskip("numpy")
    npz = tmp_path / "pts.npz"
    np.savez(npz, x=torch.randn(200, 2).numpy())
    assert main(["train", "gmm", "--data", f"npz:{npz}", "--steps", "5", "--run-dir", str(tmp_path / "n"),
                 "--no-progress"]) == 0
    npz.unlink()
    evaluated, evaluate = [], genzoo.eval.metrics.evaluate
    monkeypatch.setattr("genzoo.eval.metrics.evaluate", lambda model, *a, **k: evaluated.append(1) or evaluate(model, *a, **k))
    capsys.readouterr()
    assert main(["compare", runs[1], str(tmp_path / "n"), "--recompute", "--no-write", "--no-progress"]) == 2
    assert evaluated == [] and "pts.npz" in capsys.readouterr().err  # refused before the GAN's evaluation

    wide = tmp_path / "wide"
    assert main(["train", "gmm", "--data", "ring", "--steps", "30", "--set", "n_components=8", "--set",
                 "data.std=0.05", "--run-dir", str(wide), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["compare", runs[0], str(wide), "--metrics", "nll", "-n", "100000", "--no-write", "--no-progress"]) == 0
    out, err = capsys.readouterr()
    rows = out.splitlines()[2:4]
    assert "| gmm | ring |" in rows[0] and "| gmm | ring (std=0.05) |" in rows[1]
    assert "scored on different data (ring, ring (std=0.05))" in err
    from genzoo.eval.compare import data_label

    assert data_label({"name": "ring", "std": 0.01}) == "ring"  # a default written out is the same data
    assert data_label({"name": "digits", "dequantize": True}) == data_label({"name": "digits", "binarize": True})
    assert " +- 0.0" in rows[0].split("|")[4] and "(exact, continuous)" in rows[0]  # the NLL's standard error
    assert "(all its 5,000 examples)." in out  # not "100,000 of its", nor samples, which no metric asked drew
    assert main(["compare", runs[0], str(wide), "--metrics", "nll", "-o", str(tmp_path / "c"), "--no-progress"]) == 0
    rec = (tmp_path / "c.csv").read_text().splitlines()
    assert "nll_se" in rec[0] and "split" in rec[0] and ",ring (std=0.05)," in rec[2]


def test_eval_says_when_it_replaces_an_evaluation_of_other_settings(tmp_path, capsys):
    """eval replaced a stored evaluation of other settings (a full IWAE k=1000 by a quick -n 5) without a word."""
    runs = _ring_runs(tmp_path)
    assert main(["eval", runs[0], "--metrics", "nll", "--no-progress"]) == 0
    assert "replaced" not in capsys.readouterr().err
    assert main(["eval", runs[0], "--metrics", "nll", "--no-progress"]) == 0  # the same settings: no note
    assert "replaced" not in capsys.readouterr().err
    assert main(["eval", runs[0], "--metrics", "nll", "-n", "5", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "replaced" in err and "an evaluation of other settings (n None -> 5)" in err
    import json

    stored = json.loads((Path(runs[0]) / "eval.json").read_text())
    del stored["asked"]["batch_size"]  # as an older genzoo wrote it: not told as changed
    (Path(runs[0]) / "eval.json").write_text(json.dumps(stored))
    assert main(["eval", runs[0], "--metrics", "nll", "-n", "5", "--no-progress"]) == 0
    assert "replaced" not in capsys.readouterr().err


def test_the_compare_caption_and_csv_give_what_each_run_scored_not_the_flags():
    """compare's caption said "100,000 of its examples" of an M2 whose error was scored on 300 test examples (and of a
    feature metric's 300 real images), named samples where no metric of samples was in the table, and its CSV
    copied -n, --n-samples and --iwae-k onto every row, a GAN's and a flow's too."""
    from genzoo.eval.compare import compare_table, scored_caption

    m2 = {"model": "ssvae", "split": "test", "n_samples": 10_000, "error": {"error": 0.15, "n": 300}}
    table = compare_table([("m2", m2)])
    caption = scored_caption(table, "test", 100_000)
    assert caption == "Scored on the test split (all its 300 examples)." and "100,000" not in caption
    gan = {"model": "gan", "split": "test", "n_samples": 500, "features": {"fid": 3.0, "n_real": 300}}
    flow = {"model": "realnvp", "split": "test", "n_samples": 500, "likelihood": {"n": 300, "space": "dequantized",
            "rows": [{"kind": "exact", "nats": 91.2, "stderr": 0.6, "bits_per_dim": 2.05}]}}
    vae = {"model": "vae", "split": "test", "n_samples": 500, "likelihood": {"n": 300, "space": "binarized", "rows": [
        {"kind": "elbo", "nats": 24.0, "stderr": 0.2, "bits_per_dim": 0.54},
        {"kind": "iwae-10", "nats": 23.9, "stderr": 0.2, "bits_per_dim": 0.53}]}}
    table = compare_table([("gan", gan), ("flow", flow), ("vae", vae)])
    assert scored_caption(table, "test", 5000) == ("Scored on the test split (all its 300 examples; 500 samples for "
                                                   "the metrics of samples; IWAE k = 10).")
    assert [(r["n"], r["n_samples"], r["iwae_k"]) for r in table.records] == [(300, 500, None), (300, None, None),
                                                                            (300, None, 10)]
    rows = list(csv.DictReader(table.csv.splitlines()))
    assert [(r["n_samples"], r["iwae_k"]) for r in rows] == [("500", ""), ("", ""), ("", "10")]  # blank: no such figure


def test_a_header_names_no_space_without_a_density_row_and_a_default_mixture_weighting_is_the_same_data(ring_models):
    """A GAN's Parzen table was headed 'space: ...' (of no figure of its own); mixture1d with weights=0.5,0.5, its
    default of equal weights written out, was named other data than the default."""
    from genzoo.eval.compare import data_label
    from genzoo.eval.likelihood import format_table

    gmm, gan, _ = ring_models
    sampler = evaluate(gan, {"name": "ring"}, metrics="parzen", n_samples=500, progress=False)
    assert format_table(sampler["likelihood"]).splitlines()[0] == "ring test (n=5000, D=2)"
    density = evaluate(gmm, {"name": "ring"}, metrics="nll", n=50, progress=False)
    assert format_table(density["likelihood"]).splitlines()[0] == "ring test (n=50, D=2, space: continuous)"
    assert data_label({"name": "mixture1d", "weights": [0.5, 0.5]}) == data_label({"name": "mixture1d"}) == "mixture1d"
    assert data_label({"name": "mixture1d", "weights": [1, 1]}) == "mixture1d"
    assert data_label({"name": "mixture1d", "weights": [0.25, 0.75]}) == "mixture1d (weights=[0.25, 0.75])"


def test_samples_of_a_model_of_binarized_images_are_scored_against_binarized_test_images(tmp_path, monkeypatch):
    """A GAN of binarized digits was scored against the grey test images: a perfect sampler of the binarized data
    got FID 41.8 and density 0.15, with nothing said. A VAE's or M2's samples are grey decoder means: they still are."""
    import genzoo.eval.metrics as metrics_module
    from genzoo.data.transforms import binarize
    from genzoo.eval.metrics import format_result

    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path / "cache"))
    perfect = binarize(load_dataset("digits", "train").x, generator=torch.Generator().manual_seed(1))  # (1297, ...)
    monkeypatch.setattr(metrics_module, "draw", lambda model, n, seed, data, *a: perfect[:n])
    gan, vae = genzoo.build("gan", data_shape=(1, 8, 8)), genzoo.build("vae", data_shape=(1, 8, 8))
    binary = {"name": "digits", "binarize": True}
    out = evaluate(gan, binary, metrics="fid,dc", n_samples=1297, seed=2, progress=False)
    f = out["features"]
    assert f["real_binarized"] is True and f["fid"] < 8 and f["density"] > 0.8  # against grey images: 41.8, 0.15
    assert "1,297 samples vs 300 binarized test images" in format_result(out)
    for model, spec in ((vae, binary), (gan, {"name": "digits"})):  # decoder means; a run of grey images
        f = evaluate(model, spec, metrics="fid", n_samples=1297, seed=2, progress=False)["features"]
        assert f["real_binarized"] is False and f["fid"] > 30


def test_eval_notes_few_real_images_naming_the_side():
    """-n 8 scored FID, KID and precision against 8 real images without a word: the caveat saw the samples only."""
    from genzoo.eval.metrics import format_result

    text = format_result(_features_result(n_fake=2000, n_real=8))
    assert ("(only 8 test images (-n): FID is biased high, KID and the k-NN figures noisy; compare runs scored with "
            "the same -n)") in text
    text = format_result(_features_result(n_fake=600, n_real=50))
    assert "(only 600 samples, fewer than 1,000, and 50 test images (-n): FID is biased high," in text
    assert "the same --n-samples and -n)" in text
    assert "only" not in format_result(_features_result(n_fake=2000, n_real=300))  # a default digits run: no note


def test_compare_marks_runs_scored_against_binarized_test_images(tmp_path, capsys, monkeypatch):
    """`compare` named a GAN of binarized digits and one of grey digits both "digits", though their feature metrics
    met other test images; eval.json did not say which."""
    from genzoo.eval.compare import compare_table, data_label

    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path / "cache"))
    runs = [str(tmp_path / "bin"), str(tmp_path / "grey")]
    for rd, data in zip(runs, (["--set", "data.binarize=true"], [])):
        assert main(["train", "gan", "--data", "digits", "--steps", "2", "--run-dir", rd, "--no-progress",
                     "--sample-every", "0", *data]) == 0
    flags = ["--metrics", "fid", "--n-samples", "20", "--no-progress"]
    assert main(["eval", runs[0], *flags]) == 0
    assert "20 samples vs 300 binarized test images" in capsys.readouterr().out
    assert json.loads((Path(runs[0]) / "eval.json").read_text())["features"]["real_binarized"] is True
    assert main(["compare", *runs, *flags, "--no-write"]) == 0
    out, err = capsys.readouterr()
    assert f"| {runs[0]} | gan | digits (binarized) |" in out and f"| {runs[1]} | gan | digits |" in out
    assert "scored on different data (digits (binarized), digits)" in err
    res = {"model": "gan", "dataset": "ring", "features": {"fid": 1.0, "real_binarized": True}}
    assert compare_table([("r", res)]).rows[0][2] == "ring (binarized)"  # no labels given: the result's data set
    assert data_label({"name": "ring", "std": 0.05}, result=res) == "ring (std=0.05, binarized)"


def test_eval_notes_the_settings_its_metrics_leave_unused_and_compare_reuses_it_whatever_they_were(tmp_path, capsys,
                                                                                                    monkeypatch):
    """eval took an idle --iwae-k, --parzen-sigmas, --n-samples or --data-root without a word and recorded it in
    eval.json: a compare with other values of it (its defaults) evaluated the run again (IWAE k=5000 on MNIST: tens
    of minutes)."""
    import genzoo.cli

    rd = tmp_path / "gmm"
    assert main(["train", "gmm", "--data", "digits", "--steps", "2", "--set", "n_components=2", "--sample-every", "0",
                 "--run-dir", str(rd), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["eval", str(rd), "--metrics", "nll", "--iwae-k", "77", "--parzen-sigmas", "0.2", "--n-samples", "50",
                 "--data-root", str(tmp_path), "--no-progress"]) == 0
    err = capsys.readouterr().err
    for flag in ("--iwae-k", "--parzen-sigmas", "--n-samples", "--data-root"):  # a GMM's exact NLL: none read
        assert f"genzoo: note: {flag} is unused: " in err, err
    assert "--batch-size" not in err and "-n is" not in err  # (at their defaults: not told)
    stored = json.loads((rd / "eval.json").read_text())
    assert not {"iwae_k", "parzen_sigmas", "n_samples", "data_root"} & set(stored["asked"])
    assert stored["asked"]["batch_size"] == 100 and stored["asked"]["n"] is None  # what the NLL read
    monkeypatch.setattr(genzoo.cli, "_eval_run", lambda *a, **k: pytest.fail("evaluated again"))
    assert main(["compare", str(rd), "--metrics", "nll", "--no-write", "--no-progress"]) == 0
    stored["asked"].update(iwae_k=77, parzen_sigmas=[0.2], n_samples=50, data_root=str(tmp_path))
    (rd / "eval.json").write_text(json.dumps(stored))  # as this genzoo wrote it before: every setting recorded
    assert main(["compare", str(rd), "--metrics", "nll", "--iwae-k", "9", "--no-write", "--no-progress"]) == 0
    monkeypatch.undo()
    capsys.readouterr()
    assert main(["eval", str(rd), "--metrics", "nll", "--no-progress"]) == 0
    assert "replaced" not in capsys.readouterr().err  # only settings no metric read differ: no other settings


def test_the_bounds_noise_and_the_samples_are_not_drawn_from_the_test_sets_uniforms():
    """The global generator (the ELBO's and IWAE's noise) and the test set's binarization generator were both seeded
    with seed: the first latent noise of test example 0 was Box-Muller of the uniforms that binarized its pixels, and
    evaluate's samples' latents those that binarized the real images they are compared with (audit 127 #3)."""
    vae = genzoo.build("vae", data_shape=(1, 8, 8), latent_dim=2, hidden=(8,))
    test = load_dataset("digits", "test", binarize=True)
    uniforms = torch.rand(64, generator=torch.Generator().manual_seed(4))  # the binarization's first uniforms
    states, elbo = [], vae.elbo

    def spy(x):
        states.append(torch.get_rng_state())
        return elbo(x)

    vae.elbo = spy
    likelihood_report(vae, test, iwae_k=0, seed=4, n=10, progress=False)
    probe = torch.Generator()
    probe.set_state(states[0])
    assert not torch.equal(torch.rand(64, generator=probe), uniforms)  # the ELBO's noise comes from another stream
    samples_seed = stream_seed(4, "samples")
    assert len({4, samples_seed, stream_seed(4, "bounds")}) == 3 and samples_seed < 2**63
    assert not torch.equal(torch.rand(64, generator=torch.Generator().manual_seed(samples_seed)), uniforms)


def test_the_parzen_row_scores_the_raw_test_points_and_the_nll_stderr_is_std_over_root_n():
    """Two details of likelihood_report nothing pinned (audit 134 F6): its Parzen row could score the binarized test
    points instead of the raw ones its docstring promises (on these digits -36.31 against -17.19 nats: passed), and
    the NLL row's standard error could be std / sqrt(n - 1) (0.7356 against 0.7344: passed). A GMM's exact NLL has
    no Monte Carlo noise, so the stderr is checked against nll.std() / sqrt(n) of its own log_prob."""
    train = load_dataset("digits", "train", binarize=True)
    test, valid = load_dataset("digits", "test", binarize=True), load_dataset("digits", "valid", binarize=True)
    gmm = genzoo.build("gmm", data_shape=(1, 8, 8), n_components=4)
    gmm.setup(train.transformed(torch.Generator().manual_seed(0)), torch.Generator().manual_seed(0))
    s = gmm.eval().sample(500, torch.Generator().manual_seed(0))
    r = likelihood_report(gmm, test, iwae_k=0, progress=False, valid=valid, samples=s, seed=0)
    nll_row, parzen_row = r["rows"]
    raw = parzen_protocol(s, valid.x, test.x, progress=False)
    x = test.transformed(torch.Generator().manual_seed(0))  # the report's binarization of the test set (seed 0)
    binarized = parzen_protocol(s, valid.x, x, progress=False)
    assert raw["ll"] - binarized["ll"] > 5  # the two readings differ (-17.19 against -36.31 nats here)
    assert parzen_row["kind"] == "parzen" and r["parzen"]["ll"] == pytest.approx(raw["ll"], rel=1e-12)
    assert parzen_row["nats"] == -r["parzen"]["ll"] and r["parzen"]["sigma"] == raw["sigma"]
    with torch.no_grad():
        nll = -gmm.log_prob(x).double()  # (300,)
    assert nll_row["kind"] == "exact" and r["n"] == len(nll) == 300
    assert nll_row["nats"] == pytest.approx(float(nll.mean()), rel=1e-6)  # -65.574 nats here
    # 0.734370 here; std / sqrt(n - 1) is 0.735597, 1.7e-3 away: rel=1e-5 leaves float32's rounding (1e-7) only
    assert nll_row["stderr"] == pytest.approx(float(nll.std() / math.sqrt(len(nll))), rel=1e-5)


def test_bits_per_dim_of_dequantized_data_adds_log_levels():
    """Dequantized data's NLL adds D log L nats for L levels (Theis et al. 2016; RealNVP's bits/dim): log(L - 1)
    passed the range check that was the only unit test."""
    from genzoo.eval.likelihood import to_bits_per_dim
    nats, bpd = to_bits_per_dim(0.0, 64, "dequantized", 17)
    assert nats == pytest.approx(64 * math.log(17)) and bpd == pytest.approx(math.log2(17))
    assert to_bits_per_dim(0.0, 64, "continuous", None) == (0.0, 0.0)
