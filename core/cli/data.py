"""`data`: build the emoji data set cache (`core.data.emoji`) and print its counts."""
from __future__ import annotations

import argparse
import time

from core.data.emoji import build_dataset


def add_parsers(sub, models: argparse.ArgumentParser) -> None:
    p = sub.add_parser("data", help="build the emoji data set cache and print its counts")
    p.add_argument("--cache-dir", default=None, help="default: $EMOJI_CACHE_DIR or ~/.cache/diffusion-hub/emoji")
    p.add_argument("--force", action="store_true", help="rebuild even if the cache is valid")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    meta = build_dataset(args.cache_dir, force=args.force, progress=True)
    print(f"cache: {meta['cache_dir']} ({'built' if meta['rebuilt'] else 'already up to date'})")
    print(f"fully-qualified emoji parsed: {meta['parsed']}")
    print(f"dropped (blank render): {meta['dropped_blank']}"
          + (f" {meta['dropped_names']}" if meta["dropped_names"] else ""))
    print(f"kept: {meta['count']}  train: {meta['train']}  heldout: {meta['heldout']}")
    print(f"classes (subgroups): {meta['classes']}  groups: {len(meta['groups'])}")
    for group, n in meta["groups"].items():
        print(f"  {group}: {n}")
    print(f"keywords from emoji names (no CLDR entry): {meta['keyword_fallbacks']}")
    print(f"build time: {meta['build_seconds']} s (this run {time.perf_counter() - t0:.2f} s)")
