"""`classes` and `attributes`: the names in the checkpoints' JSON files (`core.models.names`),
printed one per line without importing torch."""
from __future__ import annotations

import argparse

from core.models.checkpoints import resolve_checkpoints
from core.models.names import attribute_names, class_names

HELP = {"classes": "list the class labels, one per line",
        "attributes": "list the DiffAE edit attributes, one per line"}


def add_parsers(sub, models: argparse.ArgumentParser) -> None:
    for name, text in HELP.items():
        sub.add_parser(name, help=text, parents=[models]).set_defaults(handler=names)


def names(args: argparse.Namespace) -> None:
    root = resolve_checkpoints(args.checkpoints)
    print("\n".join(class_names(root) if args.command == "classes" else attribute_names(root / "diffae")))
