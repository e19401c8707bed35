"""``galmet download-cutouts``: cutouts of every galaxy of a catalog from a cutout service
(any of :data:`galmet.cutouts.base.PROVIDERS`; the help names them from the registry) into a
folder, retried, validated and resumable (:func:`galmet.cutouts.download.download_cutouts`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from galmet.config import default, section
from galmet.cutouts.base import NO_ANSWER, PROVIDERS, REASONS, CutoutClient, Provider, get_provider
from galmet.cutouts.download import download_cutouts
from galmet.cutouts.manifest import CutoutDirMismatch
from galmet.io import atomic_path
from galmet.logs import setup_logging
from galmet.tables import read_table, write_table

log = logging.getLogger("galmet.cli.download_cutouts")

#: the service the command downloads from without --source: the first of the registry
#: (galmet.cutouts.base.PROVIDERS); the config's cutouts.source defaults to local files instead.
DEFAULT_SERVICE = next(iter(PROVIDERS))


def _scale_arg(text: str):
    if text == "adaptive":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--scale must be 'adaptive' or arcsec per pixel (e.g. 0.117), got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"--scale must be positive, got {text!r}")
    return value


def _size_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer number of pixels, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of pixels, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _providers() -> list[Provider]:
    return [get_provider(name) for name in PROVIDERS]


def _per_service(attr: str, fmt: str = "{}") -> str:
    """``skyserver 8, legacysurvey 4, ...``: one attribute of every registered service."""
    return ", ".join(f"{p.name} {fmt.format(getattr(p, attr))}" for p in _providers())


def _service_help() -> tuple[str, str, str]:
    """(--source, --layer, --base-url) help texts, from the registry."""
    providers = _providers()
    source = (f"cutout service (default {DEFAULT_SERVICE}, the first registered): "
              + "; ".join(f"{p.name}: {p.summary}" for p in providers))
    layers = "; ".join(f"{p.name}: default {p.default_layer}, also {', '.join(list(p.layers)[1:])}"
                       for p in providers if p.layers)
    base = ", ".join(f"{p.name} {p.default_base_url}" for p in providers)
    return (source, f"image layer of a service with layers ({layers})",
            f"service root (default: the service's own: {base}; a SkyServer URL ending in "
            "/getjpeg is used as is)")


def _size_help(default_px: int) -> str:
    limits = "; ".join(f"{p.name} {p.min_size}..{p.max_size}{' and square' if p.square else ''}"
                       for p in _providers())
    return f"pixels (default {default_px}, the config's cutouts.width; {limits})"


def cli_parser() -> argparse.ArgumentParser:
    source_help, layer_help, base_help = _service_help()
    d = section("cutouts")  # the defaults of the config's cutouts section
    p = argparse.ArgumentParser(
        prog="galmet download-cutouts",
        description=(
            f"Download cutout JPEGs ({'; '.join(p.summary for p in _providers())}) for "
            "every galaxy of a catalog into DIR/<objID>.jpg, with retries, validation and resume; "
            "DIR/cutouts.json says what the images are (a DIR holding another kind is refused); "
            "failures go to DIR/failures.csv (objID,reason,attempts; rewritten each run). Exit 0 "
            "when the run finished, even with recorded failures; 1 when it could not run "
            "(unreadable catalog, unwritable DIR, no request reached the server); 2 for bad "
            "arguments."
        ),
        epilog="Failure reasons: " + ", ".join(sorted(REASONS | {"bad_position", "no_scale"})),
    )
    p.add_argument("--catalog", required=True,
                   help="CSV, Parquet, FITS, ECSV or VOTable (.vot) with objID, ra, dec "
                        "(+ petroR90_r for --scale adaptive)")
    p.add_argument("--out", required=True, help="directory for <objID>.jpg and failures.csv")
    p.add_argument("--source", choices=list(PROVIDERS), default=DEFAULT_SERVICE, help=source_help)
    p.add_argument("--layer", help=layer_help)
    p.add_argument("--base-url", help=base_help)
    p.add_argument("--width", type=_size_arg, default=d["width"], help=_size_help(d["width"]))
    p.add_argument("--height", type=_size_arg, default=d["height"],
                   help=f"pixels (default {d['height']}, the config's cutouts.height)")
    p.add_argument("--scale", type=_scale_arg, default=d["scale"],
                   help=f"arcsec per pixel, or 'adaptive' (2*petroR90_r/0.396 arcsec across); default {d['scale']}")
    p.add_argument("--concurrency", type=_positive_int, default=None,
                   help=f"parallel connections (default: {_per_service('default_concurrency')})")
    p.add_argument("--timeout", type=float, default=d["timeout_s"],
                   help=f"seconds per request (default {d['timeout_s']:g})")
    p.add_argument("--max-attempts", type=_positive_int, default=d["max_attempts"],
                   help=f"requests per galaxy before it is recorded as failed (default {d['max_attempts']})")
    p.add_argument("--backoff", type=float, default=d["backoff_s"],
                   help=f"base of the exponential backoff in seconds (default {d['backoff_s']:g}; waits grow to at "
                        f"most {d['backoff_max_s']:g} s, or --backoff when larger)")
    p.add_argument("--max-rate", type=float, default=None,
                   help=f"requests per second at most, 0 for no cap (default: "
                        f"{_per_service('default_rate', '{:g}')})")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _cli_client(args) -> CutoutClient:
    """The client the arguments ask for; a bad combination exits 2 through the parser."""
    try:
        provider = get_provider(args.source, layer=args.layer, base_url=args.base_url)
        provider.check_size(args.width, args.height)
    except ValueError as exc:
        cli_parser().error(str(exc))
    if provider.layers and provider.layer not in provider.layers:
        log.warning("layer %s is not one galmet knows the bands of (%s): cutouts.json will say "
                    "bands unknown", provider.layer, ", ".join(provider.layers))
    rate = args.max_rate
    return CutoutClient(
        provider, timeout_s=args.timeout, max_attempts=args.max_attempts,
        backoff_s=args.backoff, backoff_max_s=max(float(default("cutouts.backoff_max_s")), args.backoff),
        max_requests_per_second="default" if rate is None else (rate or None),
        pool_size=args.concurrency or provider.default_concurrency,
    )


def _cli_catalog(args):
    """The catalog, or None after printing why it cannot be used."""
    try:
        catalog = read_table(args.catalog)
    except Exception as exc:  # noqa: BLE001 - any unreadable catalog is reported the same way
        print(f"galmet download-cutouts: cannot read catalog {args.catalog}: {exc}", file=sys.stderr)
        return None
    need = ["objID", "ra", "dec"] + (["petroR90_r"] if args.scale == "adaptive" else [])
    missing = [c for c in need if c not in catalog.columns]
    if missing:
        print(f"galmet download-cutouts: catalog {args.catalog} lacks column(s) "
              f"{', '.join(missing)} (has {', '.join(map(str, catalog.columns))}); "
              + ("with --scale adaptive it needs petroR90_r, or pass a fixed --scale"
                 if "petroR90_r" in missing else "add them"), file=sys.stderr)
        return None
    return catalog


def cli_main(args: argparse.Namespace) -> int:
    setup_logging()
    client = _cli_client(args)
    catalog = _cli_catalog(args)
    if catalog is None:
        return 1
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / ".write-test", suffix=".tmp") as tmp:
            tmp.write_bytes(b"")
        (out / ".write-test").unlink()
    except OSError as exc:
        print(f"galmet download-cutouts: cannot write to {out}: {exc}", file=sys.stderr)
        return 1
    try:
        result = download_cutouts(catalog, out, client, width=args.width, height=args.height,
                                  scale=args.scale, concurrency=args.concurrency,
                                  progress=not args.no_progress)
    except CutoutDirMismatch as exc:
        print(f"galmet download-cutouts: {exc}", file=sys.stderr)
        return 2
    write_table(result.failures, out / "failures.csv")
    print(f"{len(result.manifest)} good cutouts in {out} ({result.cached} already there, "
          f"{result.fetched} downloaded); {len(result.failures)} failed "
          f"{result.reasons or ''} -> {out / 'failures.csv'}; {result.requests_sent} requests",
          file=sys.stderr)
    if result.requests_sent and not result.answers:
        reasons = {r for r in result.reasons if r in NO_ANSWER}
        print(f"galmet download-cutouts: no request reached {client.url} "
              f"({', '.join(sorted(reasons)) or 'no answer'}); check --base-url and the network",
              file=sys.stderr)
        return 1
    return 0
