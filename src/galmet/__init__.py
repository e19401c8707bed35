"""galmet: gas-phase metallicity of galaxies from SDSS images (Wu & Boada 2019, MNRAS 484, 4683)."""

__version__ = "0.1.0"
