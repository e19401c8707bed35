"""galmet: gas-phase metallicity of galaxies from SDSS images (Wu & Boada 2019, MNRAS 484, 4683).

In a notebook or a script, :func:`galmet.load_model` opens a model file and gives a
:class:`galmet.api.Model` that predicts and explains images (see :mod:`galmet.api`)::

    import galmet
    model = galmet.load_model("results/models/oh_p50/<model>/model.pt")
    table = model.predict("resources/demo/images")   # an astropy Table, units on its columns

``load_model`` and ``Model`` are lazy attributes: ``import galmet`` alone imports neither torch
nor the model code.
"""

from galmet._version import __version__

__all__ = ["__version__", "load_model", "Model"]

_LAZY = ("load_model", "Model")


def __getattr__(name: str):
    if name in _LAZY:
        from galmet.api import Model, load_model

        return {"load_model": load_model, "Model": Model}[name]
    raise AttributeError(f"module 'galmet' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY])
