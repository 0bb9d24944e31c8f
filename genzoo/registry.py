"""Models by name: ``@register("vae")`` records a class and its constructor arguments.

``build("vae", data_shape=(1, 28, 28), latent_dim=20)`` makes a model; its ``config`` holds every
constructor argument (defaults included) as plain JSON data, so ``config.json`` can rebuild it.

>>> import genzoo
>>> m = genzoo.build("gmm", data_shape=(2,), n_components=3)
>>> m.config["n_components"], m.name
(3, 'gmm')
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
import re
import types
import typing
from typing import TYPE_CHECKING, Any, Callable, Literal, TypeVar, get_args, get_origin

from .errors import ConfigError, did_you_mean

if TYPE_CHECKING:  # not at run time: `import genzoo` does not import torch
    from .base import GenerativeModel

    M = TypeVar("M", bound=type[GenerativeModel])
else:
    M = TypeVar("M")

_MODELS: dict[str, type] = {}


#: what a model name may be: it names the model in config.json, on the command line and in run folders
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")


def register(name: str, description: str = "") -> Callable[[M], M]:
    """Class decorator: make ``cls`` buildable as ``name`` and record its arguments in ``config``.

    ``name`` is 1 to 64 letters, digits, ``-`` and ``_``, starting with a letter, and not one another
    class holds (the built-in families are loaded first, so a clash is refused whichever registers first; the same
    class registered again, as a re-run notebook cell does, replaces itself; a class has one name, so an alias is a
    subclass). ``cls`` is a :class:`~genzoo.base.GenerativeModel` whose ``__init__`` takes keyword-only arguments;
    ``description``, where not given, is the first line of its docstring. Each option is converted to its
    annotation's type (an unannotated one to its default's: a list back to a tuple, a NumPy number to Python's;
    ``data_shape`` always to a tuple of ints); one that is no JSON
    data (a callable, a module) builds a model for use in memory, which :func:`genzoo.save` and ``fit`` with a
    ``run_dir`` refuse (:func:`genzoo.io.model_config`). The shared ranges of :func:`check_option` (``lr > 0``, ``alpha >= 0``,
    ``seed >= 0``, ...) apply to the options of the constructors genzoo defines, given or defaults; a user
    model's options of the same names mean what that model says.

    >>> import torch, genzoo
    >>> @register("coin", "a biased coin: one Bernoulli logit")
    ... class Coin(genzoo.GenerativeModel):
    ...     def __init__(self, *, data_shape, logit: float = 0.0):
    ...         super().__init__()
    ...         self.data_shape, self.logit = data_shape, torch.nn.Parameter(torch.tensor(logit))
    ...     def loss(self, x):
    ...         return {"loss": torch.nn.functional.binary_cross_entropy_with_logits(self.logit.expand_as(x), x)}
    ...     def configure_optimizers(self):
    ...         return [torch.optim.Adam(self.parameters(), lr=0.1)]
    >>> m = genzoo.build("coin", data_shape=(1,))
    >>> m.config, "coin" in genzoo.list_models()
    ({'data_shape': [1], 'logit': 0.0}, True)
    >>> opts = m.configure_optimizers()
    >>> for _ in range(200):
    ...     _ = m.training_step(genzoo.Batch(torch.tensor([[1.0], [1.0], [1.0], [0.0]])), opts)
    >>> round(float(torch.sigmoid(m.logit.detach())), 2)  # the share of heads
    0.75
    >>> register("vae")(Coin)
    Traceback (most recent call last):
    genzoo.errors.ConfigError: model name 'vae' is taken by genzoo.models.vae.VAE
    >>> from genzoo.registry import _MODELS
    >>> del _MODELS["coin"]  # (this example's model leaves the registry)
    """
    if not isinstance(name, str) or not isinstance(description, str):
        raise TypeError(f"register takes a model name and a description, strings, got {name!r}, {description!r}")
    if not _NAME.fullmatch(name):
        raise ConfigError(f"model name {name!r}: 1 to 64 letters, digits, '-' and '_', starting with a letter (such "
                          "as 'my-vae')")

    def decorate(cls: M) -> M:
        from .base import GenerativeModel  # (here: `import genzoo` does not import torch)

        if not (isinstance(cls, type) and issubclass(cls, GenerativeModel)):
            raise TypeError(f"@register('{name}') takes a subclass of genzoo.GenerativeModel, got {cls!r}")
        if not cls.__module__.startswith("genzoo.models"):  # (the built-ins, registering as genzoo.models loads,
            _ensure_loaded()                                # would import themselves)
        old = _MODELS.get(name)
        if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ConfigError(f"model name '{name}' is taken by {old.__module__}.{old.__qualname__}")
        # a class has one name (cls.name): under a second, the models built under the first would take it, and
        # config.json would record it
        other = next((k for k, c in _MODELS.items() if c is cls and k != name), None)
        if other is not None:
            raise ConfigError(f"{cls.__name__} is registered as '{other}' already: for the alias '{name}', "
                              f"register a subclass (class Alias({cls.__name__}): pass)")
        sig = inspect.signature(cls.__init__)
        for p in list(sig.parameters.values())[1:]:
            if p.kind is not inspect.Parameter.KEYWORD_ONLY:
                raise TypeError(f"{cls.__name__}.__init__ must take keyword-only arguments ({p.name})")
        init = cls.__init__
        # the shared ranges are genzoo's meanings of those names: for the constructors it defines (a subclass that
        # keeps a built-in's __init__ too), not for a user's, whose `alpha` may well be negative
        shared = getattr(inspect.unwrap(init), "__module__", "").startswith("genzoo.models")
        hints: list[dict[str, Any]] = []  # the annotations, read on first use (they may name what the module defines later)

        @functools.wraps(init)
        def __init__(self, **kwargs):
            if not hints:
                try:
                    hints.append(typing.get_type_hints(init))
                except NameError as e:  # an annotation naming a function's local class, say
                    raise TypeError(f"{cls.__name__}.__init__: an annotation cannot be resolved ({e})") from None
            kwargs = _checked(name, sig, hints[0], kwargs)
            bound = sig.bind(self, **kwargs)
            bound.apply_defaults()
            config = dict(list(bound.arguments.items())[1:])
            if shared:  # the defaults too: config.json gives them back to load() as options
                for k, v in config.items():
                    check_option(name, k, v)
            init(self, **kwargs)
            self.config = {k: _plain(v) for k, v in config.items()}

        cls.__init__ = __init__
        cls.name = name
        cls.description = description or next(iter((cls.__doc__ or "").strip().splitlines()), "")
        _MODELS[name] = cls
        return cls

    return decorate


def _checked(name: str, sig: inspect.Signature, hints: dict[str, Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` of model ``name`` checked and converted to their annotations' types (an unannotated one to its
    default's, :func:`_like_default`): an unknown option or a value of the wrong type is a :class:`ConfigError`.
    Run by every registered constructor, so ``VAE(...)``, ``build("vae", ...)`` and ``load`` accept the same; the
    constructor then checks every option, defaults included, for JSON and (genzoo's own) the shared ranges."""
    params = [p for p in sig.parameters if p != "self"]
    for k in kwargs:
        if k not in params:
            raise ConfigError(f"unknown option '{k}' for model '{name}'{did_you_mean(k, params)}")
    kwargs = {k: coerce(v, hints[k], f"{name}.{k}") if k in hints else _like_default(v, sig.parameters[k].default)
              for k, v in kwargs.items()}
    if "data_shape" in params:
        if "data_shape" not in kwargs:
            raise ConfigError(f"{name} needs data_shape, the shape of one example, such as (2,) or (1, 28, 28)")
        # whatever its annotation (none, in register's example): sizes as Python ints, for the checks below and JSON
        kwargs["data_shape"] = shape = coerce(kwargs["data_shape"], tuple[int, ...], f"{name}.data_shape")
        if not 1 <= len(shape) <= 3 or any(not 1 <= s < 2**31 for s in shape):  # (10**20: a torch TypeError)
            raise ConfigError(f"{name}.data_shape: the shape of one example, 1 to 3 sizes from 1 to below 2^31 such as "
                              f"(2,) or (1, 28, 28), got {shape}")
    for k in params:  # (sig.bind's "missing a required argument" was a bare TypeError, uncaught by load)
        if k not in kwargs and sig.parameters[k].default is inspect.Parameter.empty:
            raise ConfigError(f"{name} needs option '{k}' (it has no default)")
    return kwargs


def _like_default(value: Any, default: Any) -> Any:
    """An unannotated option as config.json gives it back: a list where its default is a tuple (JSON has no
    tuples) a tuple again, and NumPy's numbers Python's (JSON takes none of them)."""
    if isinstance(value, list) and isinstance(default, tuple):
        value = tuple(value)
    if isinstance(value, (tuple, list)):
        return (tuple if isinstance(value, tuple) else list)(_like_default(v, None) for v in value)
    if type(value).__module__ == "numpy" and getattr(value, "shape", None) == ():
        return value.item()
    return value


def _plain(v: Any) -> Any:
    """Tuples become lists so that config.json round-trips."""
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    return v


def _ensure_loaded() -> None:
    from . import models  # noqa: F401  (importing the package registers every family)


def list_models() -> dict[str, str]:
    """Name -> one-line description of every registered model."""
    _ensure_loaded()
    return {k: _MODELS[k].description for k in sorted(_MODELS)}


def get(name: str) -> type[GenerativeModel]:
    _ensure_loaded()
    if name not in _MODELS:
        raise ConfigError(f"unknown model '{name}'{did_you_mean(name, _MODELS)}; known: {', '.join(sorted(_MODELS))}")
    return _MODELS[name]


def options(name: str) -> dict[str, inspect.Parameter]:
    """The constructor parameters of model ``name`` (without ``data_shape``)."""
    sig = inspect.signature(get(name).__init__)
    return {k: p for k, p in sig.parameters.items() if k not in ("self", "data_shape")}


def build(name: str, **kwargs: Any) -> GenerativeModel:
    """Build model ``name``; unknown options raise :class:`ConfigError` naming the option.

    >>> build("vae", data_shape=(0,))
    Traceback (most recent call last):
    genzoo.errors.ConfigError: vae.data_shape: the shape of one example, 1 to 3 sizes from 1 to below 2^31 such as (2,) or (1, 28, 28), got (0,)
    """
    if not isinstance(name, str):
        raise ConfigError(f"the model is named by a string (see genzoo.list_models()), got {name!r}")
    return get(name)(**kwargs)  # the registered constructor checks the options (_checked)


#: Ranges of the options several models share, checked by the constructors of genzoo's own models (under genzoo.models)
#: before the model sees them (so a bad value is a one-line error, not an exception from deep inside torch), defaults
#: too; each model checks its other options.
_RANGES: dict[str, tuple[str, float, float]] = {  # name: (rule, low, high); rules: "[]" closed, "[)" half-open, "()" open
    # Adam's eps too: at 0 a weight whose gradient is exactly 0 (behind a zero-initialised layer) steps by 0 / 0 = NaN
    **dict.fromkeys(["lr", "clip", "rejection_sharpness", "kl_weight", "eps"], ("()", 0.0, math.inf)),
    **dict.fromkeys(["weight_decay", "max_grad_norm", "reg_covar", "gp_weight", "min_std",
                     "instance_noise", "labelled_weight", "alpha"], ("[)", 0.0, math.inf)),
    # sizes and counts: below 2^31, past any real model's (one past int64 was a torch TypeError and a C++ stack dump)
    **dict.fromkeys(["latent_dim", "width", "n_couplings", "n_blocks", "n_layers", "n_scales", "n_components",
                     "n_classes", "n_samples", "d_steps", "pack", "flow_length", "labelled_batch", "chunk_size", "labels",
                     "hidden", "g_hidden", "decoder_hidden", "classifier_hidden"], ("[)", 1, 2**31)),
    "label_flip": ("[)", 0.0, 0.5),  # at 0.5 the targets would be coin flips
    **dict.fromkeys(["betas", "g_ema", "label_smoothing", "classifier_dropout",
                     "classifier_input_dropout"], ("[)", 0.0, 1.0)),
    **dict.fromkeys(["instance_noise_steps", "seed"], ("[)", 0, 2**63)),
    "bandwidths": ("[]", 1e-6, 1e18),  # 1 / (2 sigma^2) a normal float32
}


def check_option(model: str, key: str, value: Any) -> None:
    """Raise :class:`ConfigError` when a shared option is out of its range (every item, for a tuple).

    >>> check_option("vae", "lr", 1e-3)
    >>> check_option("vae", "lr", 0.0)
    Traceback (most recent call last):
    genzoo.errors.ConfigError: vae.lr must be > 0, got 0.0
    """
    if key not in _RANGES or value is None or isinstance(value, (str, bool)):
        return
    rule, lo, hi = _RANGES[key]
    items = value if isinstance(value, (tuple, list)) else (value,)
    for v in items:
        if not isinstance(v, (int, float)):
            continue
        low_ok = v >= lo if rule[0] == "[" else v > lo
        high_ok = v <= hi if rule[1] == "]" else v < hi
        if not (low_ok and high_ok and not math.isnan(v)):
            if hi == math.inf:
                need = f"a finite number {'>=' if rule[0] == '[' else '>'} {lo:g}" if v == math.inf else \
                    f"{'>=' if rule[0] == '[' else '>'} {lo:g}"
            elif hi == 2**31:  # a size: its cap said apart (no model reaches it)
                need = f">= {lo:g}" if not low_ok else "below 2^31 (a size no model reaches)"
            else:
                need = f"in {rule[0]}{lo:g}, {'2^63' if hi == 2**63 else f'{hi:g}'}{rule[1]}"
            if isinstance(value, (tuple, list)):
                raise ConfigError(f"{model}.{key}: every item must be {need}, got {list(value)}")
            raise ConfigError(f"{model}.{key} must be {need}, got {value}")


def coerce(value: Any, annotation: Any, what: str) -> Any:
    """Turn ``value`` (a string from ``--set``, or TOML/JSON data) into ``annotation``'s type.

    >>> coerce("3", int, "k"), coerce("1e-3", float, "lr"), coerce("true", bool, "b")
    (3, 0.001, True)
    >>> coerce("64,32", tuple[int, ...], "hidden")
    (64, 32)
    >>> coerce("3.0", int, "k"), coerce("1e3", int, "steps")  # whole numbers however written, as TOML's 3.0 is
    (3, 1000)
    >>> coerce("0.5", tuple[float, float], "betas")
    Traceback (most recent call last):
    genzoo.errors.ConfigError: betas takes 2 values, got ['0.5']
    """
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is Any or annotation is inspect.Parameter.empty:
        return value
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and (value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", ""))):
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(value, a, what)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"bad value {value!r} for {what}")
    if origin is Literal:
        # stripped as an int's or a float's string is (int() and float() ignore the spaces): TOML's " gaussian"
        if (v := value.strip() if isinstance(value, str) else value) in args:
            return v
        hint = did_you_mean(value, [str(a) for a in args]) if isinstance(value, str) else ""
        raise ConfigError(f"bad value {value!r} for {what}: choose one of {', '.join(map(str, args))}{hint}")
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [s for s in value.strip().strip("()[]").split(",") if s.strip()]
        if not isinstance(value, (list, tuple)):
            value = [value]
        if origin is tuple and args and Ellipsis not in args:  # tuple[float, float]: exactly that many items
            if len(value) != len(args):
                raise ConfigError(f"{what} takes {len(args)} values, got {list(value)}")
            return tuple(coerce(v, a, what) for v, a in zip(value, args))
        item = args[0] if args else Any
        return tuple(coerce(v, item, what) for v in value)
    try:
        if annotation is bool:  # True/False, 1/0 (as --set's 1 and 0), NumPy's bools, or their words
            if (isinstance(value, numbers.Integral) and value in (0, 1)) or getattr(value, "dtype", None) == "bool":
                return bool(value)
            word = value.strip().lower() if isinstance(value, str) else None  # " true" too, as int's " 4 "
            if word in ("true", "1", "yes", "on"):
                return True
            if word in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if annotation is int:
            if isinstance(value, bool) or str(getattr(value, "dtype", "")) in ("bool", "torch.bool"):
                raise ValueError  # True is no count, nor NumPy's or torch's True
            if isinstance(value, numbers.Integral) or (isinstance(value, str) and not any(c in value for c in ".eE")):
                return int(value)
            # the rest ("1e4", 3.0, np.float32, a tensor, Fraction, Decimal) is an int if whole, as int() would
            # truncate 4.5 to 4; and below 2^53, float's exact ints (the float 1e20 may stand for another number)
            if not (f := float(value)).is_integer() or abs(f) >= 2**53:
                raise ValueError
            return int(f)
        if annotation is float:
            if isinstance(value, bool):
                raise ValueError
            if math.isnan(out := float(value)):
                raise ConfigError(f"bad value {value!r} for {what}: expected a number, not NaN")
            return out
        if annotation is str:
            return str(value)
    except (TypeError, ValueError, OverflowError):
        name = getattr(annotation, "__name__", str(annotation))
        raise ConfigError(f"bad value {value!r} for {what}: expected {name}") from None
    return value
