"""Recipes: TOML files with ``[model]``, ``[data]`` and ``[train]`` tables, plus ``--set`` overrides.

A recipe (the core of ``configs/vae-mnist-binarized.toml``)::

    [model]
    name = "vae"
    latent_dim = 50
    hidden = [500, 500]

    [data]
    name = "mnist"
    binarize = true

    [train]
    epochs = 380
    lr_schedule = "cosine"
    max_minutes = 30
    batch_size = 100

``--set key=value`` overrides one entry: ``model.latent_dim=8``, ``data.n_modes=4``,
``train.batch_size=64``, or a bare key (``latent_dim=8``) when it names exactly one known option.
Unknown keys are errors that name the key, never silently ignored.

>>> r = apply_sets(new_recipe("vae"), ["latent_dim=8", "train.steps=10"])
>>> r["model"]["latent_dim"], r["train"]["steps"]
('8', '10')
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from .errors import ConfigError, did_you_mean
from .registry import list_models, options

TRAIN_KEYS = ("steps", "epochs", "batch_size", "seed", "checkpoint_every", "sample_every", "log_every", "valid_every",
              "keep", "lr_schedule", "warmup_steps", "max_minutes", "precision", "channels_last", "compile", "keep_best")
DATA_KEYS = ("name", "root", "binarize", "dequantize", "n")
BARE_DATA_KEYS = ("binarize", "dequantize", "n")  # a bare --set key; name and root take data. (name= is a slip)
SECTIONS = ("model", "data", "train")


def new_recipe(model: str | None = None) -> dict:
    return {"model": {"name": model} if model else {}, "data": {}, "train": {}}


def _model_keys(model: str | None):
    """The options of ``model``, or of any model (None)."""
    return options(model) if model else {k for m in list_models() for k in options(m)}


def belongs_elsewhere(name: str, model: str | None, here: str) -> str:
    """Where ``name``, unknown in section ``here``, belongs instead, as a hint ('' if nowhere).

    >>> belongs_elsewhere("lr", "vae", "train")
    ' (lr belongs to the model: model.lr=... in --set, under [model] in a recipe)'
    """
    model_keys = _model_keys(model)
    for section, keys, what in (("model", model_keys, "the model"), ("train", TRAIN_KEYS, "the training settings"),
                                ("data", DATA_KEYS, "the data")):
        if section != here and name in keys:
            return f" ({name} belongs to {what}: {section}.{name}=... in --set, under [{section}] in a recipe)"
    return ""


def load_recipe(path: str | Path) -> dict:
    """Read a TOML recipe (``~`` is the home folder: ``--config=~/x.toml`` leaves it to us); unknown tables or
    training keys are errors, and so is a recipe that is a folder or cannot be read.

    >>> import tempfile
    >>> load_recipe(tempfile.mkdtemp())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    genzoo.errors.ConfigError: recipe ... is a folder, not a TOML file: give the recipe's file, e.g. .../NAME.toml
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise ConfigError(f"recipe {path} is a folder, not a TOML file: give the recipe's file, e.g. {path}/NAME.toml")
    if not path.is_file():
        raise ConfigError(f"recipe not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
        raw = tomllib.loads(text.removeprefix("\ufeff"))  # a byte-order mark, as some editors write, is no error
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"recipe {path} is not valid TOML: {e}") from None
    except OSError as e:  # unreadable (its permissions): the user's to fix, as a data file's
        raise ConfigError(f"recipe {path}: cannot be read ({e.strerror or e})") from None
    for k in raw:
        if k not in SECTIONS and not isinstance(raw[k], dict):  # a key before any table
            raise ConfigError(f"recipe {path}: '{k}' stands outside any table: put it under [model], [data] or [train]")
        if k not in SECTIONS:
            raise ConfigError(f"recipe {path}: unknown table [{k}]{did_you_mean(k, SECTIONS)}; use [model], [data], [train]")
        if not isinstance(raw[k], dict):
            raise ConfigError(f"recipe {path}: '{k}' must be a table [{k}]")
    recipe = new_recipe()
    for k in SECTIONS:
        recipe[k].update(raw.get(k, {}))
    if "name" in recipe["model"] and not isinstance(recipe["model"]["name"], str):
        raise ConfigError(f"recipe {path}: [model] name must be a model name in quotes, got {recipe['model']['name']!r}")
    model = recipe["model"].get("name")
    model = model if model in list_models() else None  # (an unknown name is refused with the model's build)
    for k in recipe["train"]:
        if k not in TRAIN_KEYS:
            hint = belongs_elsewhere(k, model, "train") or did_you_mean(k, TRAIN_KEYS)
            raise ConfigError(f"recipe {path}: unknown [train] key '{k}'{hint}")
    model_keys = _model_keys(model)
    for k in recipe["model"]:
        if k != "name" and k not in model_keys and (hint := belongs_elsewhere(k, model, "model")):
            raise ConfigError(f"recipe {path}: unknown [model] key '{k}'{hint}")
    if "steps" in recipe["train"] and "epochs" in recipe["train"]:
        raise ConfigError(f"recipe {path}: [train] gives both steps and epochs; keep one")
    if "data_shape" in recipe["model"]:
        raise ConfigError(f"recipe {path}: [model] data_shape is not an option: the shape comes from the data")
    return recipe


def apply_sets(recipe: dict, sets: list[str]) -> dict:
    """Apply ``key=value`` overrides (values stay strings; the builders coerce and check them)."""
    model = recipe["model"].get("name")
    model_keys = list(options(model)) if model else []
    lengths = set()
    for item in sets:
        if "=" not in item:
            raise ConfigError(f"--set takes key=value, got '{item}'")
        key, value = (s.strip() for s in item.split("=", 1))
        if not key:
            raise ConfigError(f"--set takes key=value, got '{item}' (no key)")
        section, dot, name = key.rpartition(".")
        if dot and not (section and name):
            raise ConfigError(f"--set key '{key}' has an empty part: write section.key=value or key=value")
        if section == "model" and name == "name":
            raise ConfigError("the model is chosen by `genzoo train MODEL`, not by --set")
        if section:
            if section not in SECTIONS:
                raise ConfigError(f"unknown --set section '{section}' in '{key}': use model., data. or train.")
            if section == "model" and name not in model_keys:
                hint = belongs_elsewhere(name, model, "model") or did_you_mean(name, model_keys)
                raise ConfigError(f"unknown --set key '{key}' for model '{model}'{hint}")
            if section == "train" and name not in TRAIN_KEYS:
                hint = belongs_elsewhere(name, model, "train") or did_you_mean(name, TRAIN_KEYS)
                raise ConfigError(f"unknown --set key '{key}'{hint}")
            # data.* may also be dataset parameters (n_modes, std, ...): load_dataset checks them
        else:
            places = [s for s, keys in (("model", model_keys), ("train", TRAIN_KEYS), ("data", BARE_DATA_KEYS))
                      if name in keys]
            if not places:
                prefix = f"data.{name}=..."
                if name in DATA_KEYS:  # name= / root=: the data's, with its prefix (a bare name= is a slip)
                    raise ConfigError(f"unknown --set key '{name}' (the dataset's {name} takes a prefix: {prefix})")
                owners = [m for m in list_models() if m != model and name in options(m)] if model else []
                if owners:  # another family's option: not a dataset's, whatever its name
                    raise ConfigError(f"unknown --set key '{name}' for model '{model}': it is an option of "
                                      f"{', '.join(owners)} (`genzoo models {model}` lists {model}'s)")
                known = model_keys + list(TRAIN_KEYS) + list(BARE_DATA_KEYS)
                hint = did_you_mean(name, known)
                raise ConfigError(f"unknown --set key '{name}'" + (f"{hint[:-1]} Or, for a dataset option, {prefix})"
                                                                   if hint else f" (dataset options take a prefix: {prefix})"))
            if len(places) > 1:
                raise ConfigError(f"--set key '{name}' is ambiguous: write {' or '.join(p + '.' + name for p in places)}")
            section = places[0]
        if section == "model" and name == "name":
            raise ConfigError("the model is chosen by `genzoo train MODEL`, not by --set")
        if section == "data" and name == "name" and not value:
            raise ConfigError("--set data.name needs a dataset name, .npz file or image folder (see `genzoo data`)")
        if section == "data" and name == "root" and not value:  # as --data-root "" (an unset variable), not "."
            raise ConfigError("--set data.root needs a folder (of MNIST's files)")
        if section == "train" and name in ("steps", "epochs"):  # the length --set gives replaces any other
            lengths.add(name)
            if lengths == {"steps", "epochs"}:
                raise ConfigError("--set gives both steps and epochs; keep one")
            recipe["train"].pop("epochs" if name == "steps" else "steps", None)
        recipe[section][name] = value
    return recipe
