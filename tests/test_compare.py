"""genzoo.eval.compare's data labels: which runs `genzoo compare` says were scored on the same data (audit a127)."""

from genzoo.eval.compare import compare_table, data_label


def _density(space: str) -> dict:
    """An evaluate() result of a model's own NLL figure in ``space``."""
    return {"model": "gmm", "likelihood": {"space": space, "n": 300, "rows": [
        {"metric": "NLL", "kind": "exact", "nats": 88.2, "stderr": 2.2, "bits_per_dim": 1.99}]}}


def test_the_data_seed_written_out_at_its_default_or_idle_is_the_same_data():
    """a127 #1: `--set data.seed=0` (the default) labelled the ring `ring (seed=0)`, and `digits (seed=3)` was other
    data than `digits`, though the seed draws the toy sets alone: compare noted "scored on different data"."""
    assert data_label({"name": "ring", "seed": 0, "n": 2000}) == data_label({"name": "ring"}) == "ring"
    assert data_label({"name": "ring", "seed": 5}) == "ring (seed=5)"  # another draw of the test points: other data
    for name in ("digits", "mnist", "npz:/data/x.npz", "folder:/data/faces"):
        assert data_label({"name": name, "seed": 3}) == data_label({"name": name}), name
    assert data_label({"name": "ring", "n": None}, split="train") == "ring"  # n's default, written out
    assert data_label({"name": "ring", "n": 500}, split="train") == "ring (n=500)"


def test_a_density_scored_on_binarized_draws_is_told_from_one_scored_on_grey_levels():
    """a127 #9: a GMM (or a flow) of binarized digits and one of grey digits were both `digits`, their NLLs both in
    the space discrete-as-real: no note said they scored other data."""
    binary, grey = {"name": "digits", "binarize": True}, {"name": "digits", "dequantize": False}
    assert data_label(binary, result=_density("discrete-as-real")) == "digits (binarized)"
    assert data_label(grey, result=_density("discrete-as-real")) == "digits"
    assert data_label({"name": "digits", "binarize": "true"}, result=_density("discrete-as-real")) == "digits (binarized)"
    # a Bernoulli decoder on 0/1 draws: its space already says binarized
    assert data_label(binary, result=_density("binarized")) == "digits"
    # Parzen alone scores the images as stored, and so does a result without a likelihood
    parzen = {"likelihood": {"space": "discrete-as-real", "rows": [{"kind": "parzen", "nats": 3.0}]}}
    assert data_label(binary, result=parzen) == data_label(binary, result={}) == data_label(binary) == "digits"
    # marked once where the feature metrics also met binarized test images
    both = {**_density("discrete-as-real"), "features": {"fid": 3.0, "real_binarized": True}}
    assert data_label({**binary, "seed": 0}, result=both) == "digits (binarized)"
    assert data_label({"name": "ring", "binarize": True, "std": 0.05}, result=both) == "ring (std=0.05, binarized)"
    # a likelihood that does not read as one (a damaged eval.json) labels the data as the recipe does
    for odd in ({"likelihood": None}, {"likelihood": {"space": 3, "rows": [{"kind": "exact"}]}}, {"likelihood": []}):
        assert data_label(binary, result=odd) == "digits"
    table = compare_table([("bin", _density("discrete-as-real"))], [data_label(binary, result=_density("x"))])
    assert table.rows[0][2] == "digits (binarized)"
