"""The registry's contract with user models: names, clashes, descriptions, option ranges and config.json."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import genzoo
from genzoo.errors import ConfigError
from genzoo.registry import _MODELS, register


@pytest.fixture(autouse=True)
def _registry():
    """Each test's models leave the registry (one that went wrong must not break the tests after it)."""
    genzoo.list_models()  # the built-ins in first
    before = dict(_MODELS)
    yield
    _MODELS.clear()
    _MODELS.update(before)


def _cell(name="cell"):
    """What a notebook cell defines: a one-parameter model, registered as ``name`` (a new class each call)."""
    @register(name, "one point")
    class Cell(genzoo.GenerativeModel):
        def __init__(self, *, data_shape):
            super().__init__()
            self.data_shape, self.mu = tuple(data_shape), torch.nn.Parameter(torch.zeros(data_shape))

    return Cell


def test_a_taken_name_is_refused_whichever_registers_first():
    """register replaced a model of the same name without a word: a user's "vae" registered before the built-ins
    loaded was dropped by them (and its saved folders loaded as the built-in VAE), one registered after replaced the
    built-in for the rest of the process."""
    code = ("import genzoo, torch\n"
            "try:\n"
            "    @genzoo.register('vae', 'my own VAE')\n"
            "    class MyVAE(genzoo.GenerativeModel):\n"
            "        def __init__(self, *, data_shape):\n"
            "            super().__init__()\n"
            "except genzoo.ConfigError as e:\n"
            "    print('refused:', e)\n"
            "print(type(genzoo.build('vae', data_shape=(2,))).__module__)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.stdout.splitlines() == ["refused: model name 'vae' is taken by genzoo.models.vae.VAE",
                                       "genzoo.models.vae"], out.stderr
    with pytest.raises(ConfigError, match="^model name 'gmm' is taken by genzoo.models.gmm.GaussianMixture$"):
        @register("gmm", "my own GMM")
        class MyGMM(genzoo.GenerativeModel):
            def __init__(self, *, data_shape):
                super().__init__()
    assert type(genzoo.build("gmm", data_shape=(2,))).__module__ == "genzoo.models.gmm"
    assert not genzoo.list_models()["gmm"].startswith("my")


def test_the_same_class_registered_again_replaces_itself():
    """A re-run notebook cell registers a new class of the same module and name: that is no clash."""
    first, second = _cell(), _cell()
    assert first is not second and genzoo.registry.get("cell") is second
    assert type(genzoo.build("cell", data_shape=(2,))) is second
    with pytest.raises(ConfigError, match="taken by"):
        @register("cell", "another cell")
        class Other(genzoo.GenerativeModel):
            def __init__(self, *, data_shape):
                super().__init__()


@pytest.mark.parametrize("bad, error", [(7, TypeError), (None, TypeError), ("", ConfigError), ("a b", ConfigError),
                                        ("../x", ConfigError), ("a/b", ConfigError), ("-x", ConfigError),
                                        ("x" * 65, ConfigError), ("9lives", ConfigError)])
def test_a_model_name_is_a_short_word(bad, error):
    """Any object was a name: a number broke list_models() and every unknown-name error for the rest of the process,
    and '', 'a b' or '../x' named models that no command line or folder could."""
    with pytest.raises(error, match="model name|name and a description"):
        @register(bad, "doc")
        class Bad(genzoo.GenerativeModel):
            def __init__(self, *, data_shape):
                super().__init__()
    assert bad not in _MODELS
    assert "vae" in genzoo.list_models()
    with pytest.raises(ConfigError, match="unknown model '7'"):
        genzoo.build("7", data_shape=(2,))
    assert _cell("m2-kw_3").name == "m2-kw_3"  # letters, digits, '-' and '_'
    assert _cell("MyVAE").name == "MyVAE"  # upper case too: users' registrations (and their runs) of before


def test_only_generative_models_register():
    with pytest.raises(TypeError, match="subclass of genzoo.GenerativeModel"):
        @register("plain")
        class Plain(torch.nn.Module):
            """An nn.Module, no more."""
            def __init__(self, *, data_shape):
                super().__init__()
    assert "plain" not in _MODELS


def test_a_class_without_a_docstring_or_description_registers():
    """The description was the docstring's first line, and a class without one was a bare IndexError."""
    @register("nodoc")
    class NoDoc(genzoo.GenerativeModel):
        def __init__(self, *, data_shape):
            super().__init__()

    assert genzoo.list_models()["nodoc"] == ""


def test_a_user_models_options_are_its_own(tmp_path):
    """The shared ranges (alpha >= 0, seed >= 0, hidden >= 1) applied to a user model's options of those names, but
    not to defaults: built with its defaults, such a model saved and could not be loaded again."""
    @register("leaky", "a model whose alpha may be negative")
    class Leaky(genzoo.GenerativeModel):
        def __init__(self, *, data_shape, alpha: float = -0.5, seed: int = -1, hidden: int = 0):
            super().__init__()
            self.data_shape, self.w = tuple(data_shape), torch.nn.Parameter(torch.zeros(1))

    m = genzoo.build("leaky", data_shape=(2,))
    assert genzoo.build("leaky", data_shape=(2,), alpha=-0.5, seed=-3).config["seed"] == -3
    genzoo.save(m, tmp_path / "leaky")
    assert genzoo.load(tmp_path / "leaky").config == m.config
    with pytest.raises(ConfigError, match=r"^vae.lr must be > 0, got 0.0$"):  # genzoo's own still checked
        genzoo.build("vae", data_shape=(2,), lr=0)


def test_a_default_out_of_a_shared_range_fails_at_build_not_at_load():
    """Only the options given were checked: a default out of range was written to config.json, which load refused.
    (The ranges are checked for genzoo's own constructors: this one claims to be one.)"""
    def __init__(self, *, data_shape, lr: float = -1.0):
        super(Own, self).__init__()

    __init__.__module__ = "genzoo.models.fake"
    Own = register("own", "a default out of range")(type("Own", (genzoo.GenerativeModel,), {"__init__": __init__}))
    with pytest.raises(ConfigError, match=r"^own.lr must be > 0, got -1.0$"):
        genzoo.build("own", data_shape=(2,))


def test_unannotated_options_come_back_from_config_json_as_they_went_in(tmp_path):
    """An option without an annotation went into config.json as given: a tuple default came back a list (so
    `hidden + (2,)` failed in load), and a NumPy number or a torch.dtype failed genzoo.save with a bare TypeError."""
    @register("untyped", "options without annotations")
    class Untyped(genzoo.GenerativeModel):
        def __init__(self, *, data_shape, hidden=(8,), scale=1.0, dtype="float32"):
            super().__init__()
            self.data_shape = tuple(data_shape)
            sizes = hidden + (2,)  # a tuple default, as a user writes it
            self.net = torch.nn.Linear(sizes[0], sizes[-1])

        def loss(self, x):
            return {"loss": self.net(torch.cat([x] * 4, 1)[:, :self.net.in_features]).square().mean()}

        def configure_optimizers(self):
            return [torch.optim.SGD(self.parameters(), lr=0.1)]

    m = genzoo.build("untyped", data_shape=(2,), scale=np.float32(0.5), hidden=[np.int64(4)])
    assert m.config == {"data_shape": [2], "hidden": [4], "scale": 0.5, "dtype": "float32"}
    assert type(m.config["scale"]) is float and type(m.config["hidden"][0]) is int
    genzoo.save(m, tmp_path / "u")
    assert genzoo.load(tmp_path / "u").config == m.config
    genzoo.save(genzoo.build("untyped", data_shape=(2,)), tmp_path / "d")
    assert genzoo.load(tmp_path / "d").net.in_features == 8
    # an option JSON cannot hold builds a model for use in memory (a user's activation, a pretrained module), and
    # saving it is a one-line error (it was a bare TypeError), before anything is written
    m = genzoo.build("untyped", data_shape=(2,), dtype=torch.float32)
    assert m.config["dtype"] is torch.float32
    for write in (lambda: genzoo.save(m, tmp_path / "t"),
                  lambda: genzoo.fit(m, genzoo.data.load_dataset("ring", n=16), steps=1, run_dir=tmp_path / "t",
                                     progress=False)):
        with pytest.raises(ConfigError, match=r"^untyped.dtype: config.json holds a model's options as JSON data, "
                                              r"and torch.float32 is not .*: this model cannot be saved \(it trains"):
            write()
        assert not (tmp_path / "t").exists()
    assert genzoo.fit(m, genzoo.data.load_dataset("ring", n=16), steps=1, progress=False).step == 1  # in memory


def test_an_annotation_that_cannot_be_resolved_is_a_one_line_error():
    """An annotation naming a function's local class was a bare NameError from typing at the first build."""
    def make():
        class Cfg:
            pass

        @register("localann", "annotation names a local class")
        class LocalAnn(genzoo.GenerativeModel):
            def __init__(self, *, data_shape, cfg: "Cfg | None" = None):
                super().__init__()

    make()
    with pytest.raises(TypeError, match=r"^LocalAnn.__init__: an annotation cannot be resolved \(name 'Cfg'"):
        genzoo.build("localann", data_shape=(2,))
