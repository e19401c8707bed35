"""Augmentation: the 8 symmetries of the dihedral group D4 on torch image tensors.

A galaxy's orientation on the sky is arbitrary, so rotations by multiples of 90 degrees, with
and without a flip, are augmentations in training and averaged over at test time (TTA).
They act on tensors ``... x C x H x W``; element ``k`` in 0..7 is ``k % 4`` quarter turns,
preceded by a horizontal flip when ``k >= 4``.
"""

from __future__ import annotations

import torch

D4_SIZE = 8


def d4(x, k: int):
    """Apply D4 element ``k`` (0..7) to a torch tensor ``... x C x H x W`` (H == W)."""
    if not 0 <= k < D4_SIZE:
        raise ValueError(f"D4 element must be in 0..7, got {k}")
    if k >= 4:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, k % 4, dims=(-2, -1))


def d4_inverse(k: int) -> int:
    """The element that undoes ``k``: rotations invert to the opposite turn, flips to themselves."""
    return (4 - k) % 4 if k < 4 else k


def d4_per_sample(x, ks):
    """Apply a (possibly different) D4 element to each sample of a batch ``N x C x H x W``.

    Vectorised: one masked assignment per group element, no Python loop over samples.
    ``ks`` is an integer tensor of length N with values in 0..7.
    """
    ks = torch.as_tensor(ks, device=x.device)
    if ks.shape != (x.shape[0],):
        raise ValueError(f"need one D4 element per sample: {x.shape[0]} samples, got {tuple(ks.shape)}")
    out = torch.empty_like(x)
    for k in range(D4_SIZE):
        mask = ks == k
        if mask.any():
            out[mask] = d4(x[mask], k)
    return out
