"""`wirechat web` options (placeholder until the web UI lands)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `wirechat web`."""


def run(args: argparse.Namespace) -> int:
    raise SystemExit("wirechat web: not built yet")
