"""Inpainting MNIST test digits with a GAN, a VAE and a flow, two ways each: by latent optimisation (Yeh et
al. 2016) and by the model's posterior mean (importance sampling on its own draws), against two
baselines: the mean training image, and the nearest training image on the known pixels.

The three models are the runs of ``genzoo bench parzen-mnist`` (trained there from ``configs/`` when
missing). Each fills the first 1,000 test digits under two masks, the central 14x14 square and 80% of the
pixels missing at random; the score is the PSNR (dB, peak 1) on the missing pixels, mean +- standard
error over the images. The search: Adam on z, lambda = 0.003, then Poisson blending (which changes only
the missing pixels, so the PSNR measures the fill). ``SEARCH`` gives each model's steps, starts and
precision: the GAN and the VAE search at the library's defaults (``inpaint.STEPS`` and ``RESTARTS``,
measured in :func:`genzoo.apps.inpaint.inpaint`'s docstring) in fp32; the flow, whose first start is its exact code of the image with each hole filled by
the mean of its known pixels, 100 steps from that start alone under bf16 autocast (its convolutions are
the cost: 2.7x faster than fp32 on an AVX512-BF16 CPU, the likelihood still in fp32; in fp32 on a CPU that
emulates bf16, 6x as slow there: :func:`search_settings`).
The posterior mean (:func:`genzoo.apps.inpaint.posterior_fill`): ``inpaint.SAMPLES`` draws of the
model, sigma chosen on its own draws for each mask, then the mask blend.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..apps.inpaint import RESTARTS, SAMPLES, STEPS

DESCRIPTION = ("PSNR of inpainted MNIST digits (centre, random 80%): GAN, VAE, flow, by search and by posterior mean, "
               "vs mean fill and nearest neighbour")
#: the flags of `genzoo bench` this benchmark reads (others given are refused), as argparse dest names
FLAGS = ("steps", "data_root")
MASKS = {"center": "centre 14x14", "random:0.8": "random 80%"}
MODELS = ("GAN", "VAE", "RealNVP")
N_IMAGES, BATCH = 1000, 250
#: model -> (Adam steps, starts, precision) of its search
#: (RealNVP's in bf16, 2.7x as fast on an AVX512-BF16 CPU; in fp32 where bf16 is emulated: 6x as slow there)
SEARCH = {"GAN": (STEPS, RESTARTS, "fp32"), "VAE": (STEPS, RESTARTS, "fp32"), "RealNVP": (100, 1, "bf16")}


def search_settings() -> dict:
    """:data:`SEARCH`, with fp32 for bf16 where this CPU emulates bf16 (:func:`~genzoo.train.acceleration.bf16_emulated`)."""
    import torch

    from genzoo.train.acceleration import bf16_emulated

    slow = bf16_emulated(torch.device("cpu"))
    return {k: (steps, starts, "fp32" if slow and p == "bf16" else p) for k, (steps, starts, p) in SEARCH.items()}


#: the defaults of its FLAGS, in words (`genzoo bench` lists them); --quick trains (or reuses) parzen-mnist's
#: quick runs
DEFAULTS = {"steps": ", ".join(f"{k} {v[0]}" for k, v in SEARCH.items())}
QUICK_RUNS = True


def nearest_fill(train_x, y, mask, chunk: int = 10_000):
    """Each image's missing pixels copied from the training image nearest in L2 on its known pixels, by
    :func:`~genzoo.apps.inpaint.masked_sq_dist` (two matrix products) a chunk of the training set at a time."""
    import torch

    from genzoo.apps.inpaint import masked_sq_dist

    t, yf, m = train_x.flatten(1), y.flatten(1).double(), mask.flatten(1).double()  # (N, D), (B, D), (B, D)
    best_d = torch.full((len(yf),), float("inf"), dtype=torch.float64)
    best = torch.zeros(len(yf), dtype=torch.long)
    for s in range(0, len(t), chunk):
        tc = t[s:s + chunk].double()  # float64 a chunk at a time, not the whole training set at once
        d = masked_sq_dist(tc, yf, m)  # (n, B)
        v, j = d.min(0)
        better = v < best_d
        best_d, best = torch.where(better, v, best_d), torch.where(better, j + s, best)
    fill = t[best]  # (B, D)
    return (mask.flatten(1) * y.flatten(1) + (1 - mask.flatten(1)) * fill).reshape(y.shape)


def model_run(label: str, root: str, runs_dir: Path, quick: bool) -> Path:
    """The parzen-mnist run of ``label``: reused where it was trained on the MNIST files of ``root`` as
    parzen-mnist trains it now (:func:`stale`: its recipe's model and training options, and the benchmark's own
    flags), else trained (again) now, with a note that says why (a run of an older recipe, of other options or of
    other files was scored under today's stamp)."""
    import sys

    from . import parzen_mnist
    from .common import configs_dir

    run = runs_dir / ("parzen-mnist-quick" if quick else "parzen-mnist") / label.lower()
    why = "missing" if not (run / "model.safetensors").is_file() else stale(
        run, configs_dir() / parzen_mnist.MODELS[label][0], root, parzen_mnist.train_flags(label, quick))
    if why:
        if why != "missing":
            print(f"genzoo: note: {run} {why}: training it again", file=sys.stderr)
        parzen_mnist.train(label, root, str(run.parent), quick)
    return run


def stale(run: Path, recipe_file: Path, root: str, flags: list[str] | tuple = ()) -> str | None:
    """Why ``run`` is not what ``genzoo train --config RECIPE --data-root ROOT FLAGS`` trains now, or None: its MNIST
    files are other ones (their recorded fingerprint), or its recorded model, data or training options differ from
    that command's, resolved as `genzoo train` resolves them (the defaults it fills into the train table included),
    both ways: an option the run recorded and the command does not give (``pack = 4``, ``data.binarize``) counts as
    one that differs. :data:`BOOKKEEPING` is left out. The length and the data's size are compared: a run trained for
    fewer (or more) steps, or on fewer images, than parzen-mnist trains (its recipe with
    :func:`~genzoo.bench.parzen_mnist.train_flags`) is another run. A run without a readable run.json is stale too."""
    import json

    from genzoo.cli import _resolve, _train_defaults, _typed_train, parse, read_recipe
    from genzoo.data import typed_spec
    from genzoo.data.mnist import mnist_fingerprint
    from genzoo.errors import GenZooError
    from genzoo.recipes import load_recipe

    command = ["train", "--config", str(recipe_file), "--data-root", root, *flags]
    try:
        recorded = read_recipe(run)
        named = load_recipe(recipe_file)  # the keys the file itself names (for the note)
        want, _, transform = _resolve(parse(command))  # as cmd_train: defaults < recipe < flags < --set
        want["train"] = _typed_train(want["train"])
        # MNIST is discrete, so genzoo train adds the model's default transform (binarize, dequantize) and records the
        # data table typed (its numbers, its root, its files' fingerprint)
        want["data"] = typed_spec({**want["data"], **transform})
    except GenZooError as e:
        return f"cannot be reused ({e})"
    content, now = recorded["data"].get("content_fingerprint"), mnist_fingerprint(root)  # (cached: no split loaded)
    if content is not None and now is not None and content != now:  # (as load_spec checks it)
        return f"cannot be reused (the MNIST files in {root} are not the ones the run recorded ({content}; now {now}))"
    trains = f"`genzoo train --config {recipe_file.name}{' ' * bool(flags)}{' '.join(flags)}`"
    for table in ("model", "data", "train"):
        # (the model table: the recipe's TOML values, typed as the model records them; the flags set no model key)
        have, need = recorded[table], json.loads(json.dumps(want[table]))  # (tuples as run.json holds them: lists)
        if table == "train":  # an option an older genzoo did not record trained at fit's default, as --resume takes it
            have = {**_train_defaults(), **have}
        for key in [*need, *(k for k in have if k not in need)]:  # both ways
            if key in BOOKKEEPING or have.get(key) == need.get(key):
                continue
            was = f"was trained with {table}.{key} = {have.get(key)!r}"
            if key not in need:
                return f"{was}, which {trains} does not set"
            if named.get(table, {}).get(key, object()) == need[key]:  # the file's own value
                return f"{was}, and {recipe_file.name} now says {need[key]!r}"
            return f"{was}, and {trains} trains with {need[key]!r}"
    return None


#: recipe keys that leave the trained model as it is (how often it logged, sampled and kept checkpoints, where its
#: data folder is, the MNIST files' fingerprints, checked on their own), so a change of them retrains nothing; the
#: length (steps, epochs) and the data's size (n) are compared, against parzen-mnist's own flags
BOOKKEEPING = ("checkpoint_every", "sample_every", "log_every", "valid_every", "keep", "root", "content_fingerprint",
               "split_fingerprint")


def run(args) -> str:
    import torch

    import genzoo
    from genzoo.apps.inpaint import inpaint, make_mask, model_draws, posterior_fill, psnr
    from genzoo.cli import read_recipe
    from genzoo.data import load_dataset

    from .common import mnist_root

    root = mnist_root(args)
    quick = args.quick
    search = search_settings()
    n = 20 if quick else N_IMAGES
    train = load_dataset("mnist", "train", root=root, n=2000 if quick else None)
    test = load_dataset("mnist", "test", root=root, n=n)
    g = torch.Generator().manual_seed(0)
    results: dict[tuple[str, str], tuple[float, float, float]] = {}

    def score(name, mask_name, filled, mask, seconds):
        p = psnr(filled, test.x, 1 - mask)
        results[(name, mask_name)] = (float(p.mean()), float(p.std() / len(p) ** 0.5), seconds)

    masks = {m: torch.stack([make_mask(m, (1, 28, 28), g) for _ in range(n)]) for m in MASKS}
    mean_image = train.x.mean(0)
    for m, mask in masks.items():
        t0 = time.time()
        score("mean fill", m, mask * test.x + (1 - mask) * mean_image, mask, time.time() - t0)
        t0 = time.time()
        score("nearest training image", m, nearest_fill(train.x, test.x, mask), mask, time.time() - t0)
    sigmas: dict[tuple[str, str], float] = {}
    for label in MODELS:
        run = model_run(label, root, Path(args.runs_dir), quick)
        model = genzoo.load(run)
        levels = test.levels if read_recipe(Path(run))["data"].get("dequantize") else None  # (test: stored, as scored)
        t0 = time.time()
        bank = model_draws(model, 1000 if quick else SAMPLES, torch.Generator().manual_seed(0))  # (S, D)
        drawn = time.time() - t0
        for m, mask in masks.items():
            t0 = time.time()
            out = posterior_fill(model, test.x, mask, bank=bank)
            score(f"genzoo {label} (posterior mean)", m, out["filled"], mask, drawn / len(masks) + time.time() - t0)
            sigmas[(label, m)] = out["sigma"]
        steps, restarts, precision = search[label]
        steps = 5 if quick else (args.steps or steps)
        for m, mask in masks.items():
            t0 = time.time()
            filled = []
            for i in range(0, n, BATCH):
                out = inpaint(model, test.x[i:i + BATCH], mask[i:i + BATCH], steps=steps, restarts=restarts,
                              generator=torch.Generator().manual_seed(i), precision=precision, levels=levels)
                filled.append(out["filled"])
            score(f"genzoo {label} (search)", m, torch.cat(filled), mask, time.time() - t0)
    lines = ["## Inpainting MNIST (`genzoo bench inpaint-mnist`)", "",
             f"The first {n:,} test digits; PSNR in dB on the missing pixels (higher is better), mean +- standard error. "
             "genzoo's models search z with Adam (lambda 0.003: the GAN's discriminator, the VAE's prior, the "
             "flow's likelihood; " + "; ".join(f"{k} {5 if quick else (args.steps or v[0])} steps from {v[1]} "
                                              f"start{'s' * (v[1] > 1)} in {v[2]}" for k, v in search.items())
             + ") and Poisson-blend G(z) into the known pixels; or fill the holes with the model's posterior mean "
             f"given the known pixels, from {1000 if quick else SAMPLES:,} of its draws (importance weights "
             "exp(-|known-pixel error|^2 / (2 sigma^2)), sigma chosen on the model's own draws: "
             + ", ".join(f"{k} {sigmas[(k, 'center')]:.2f} / {sigmas[(k, 'random:0.8')]:.2f}" for k in MODELS)
             + ", centre / random). Models: the runs of `genzoo bench parzen-mnist`.", "",
             "| method | " + " | ".join(MASKS.values()) + " | seconds |", "|---|" + "---|" * len(MASKS) + "---|"]
    methods = [f"genzoo {x} ({how})" for x in MODELS for how in ("search", "posterior mean")]
    names = ["mean fill", "nearest training image"] + methods
    for name in names:
        cells = [f"{results[(name, m)][0]:.2f} +- {results[(name, m)][1]:.2f}" for m in MASKS]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {sum(results[(name, m)][2] for m in MASKS):.0f} |")
    for m, label in MASKS.items():
        mean_fill, nn = results[("mean fill", m)][0], results[("nearest training image", m)][0]
        beat_mean = [x[7:] for x in methods if results[(x, m)][0] > mean_fill]
        beat_nn = [x[7:] for x in methods if results[(x, m)][0] > nn]
        lines.append(f"- {label}: beat mean fill: {', '.join(beat_mean) or 'none'}; "
                     f"beat the nearest neighbour: {', '.join(beat_nn) or 'none'}.")
    return "\n".join(lines)
