"""`wirechat bench` options (placeholder until the bench lands)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `wirechat bench`."""


def run(args: argparse.Namespace) -> int:
    raise SystemExit("wirechat bench: not built yet")
