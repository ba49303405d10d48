"""`slomo-rig devices`: list the cameras this machine can see."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from rig.discovery import find_all


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("devices", help="list connected cameras (all backends)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=devices)


def devices(args: argparse.Namespace) -> int:
    notes: list[str] = []
    found = find_all(notes)
    if getattr(args, "json", False):
        print(json.dumps({"devices": [asdict(d) for d in found], "notes": notes}, indent=2))
        return 0
    if not found:
        print("No cameras found. Check cables and power; 'pip install pypylon' for Basler.")
    else:
        print(f"{'backend':<12} {'kind':<7} {'model':<28} serial")
        for d in found:
            extra = f"  ({d.note})" if d.note else ""
            print(f"{d.backend:<12} {d.kind:<7} {d.model:<28} {d.serial}{extra}")
    for n in notes:
        print(f"note: {n}")
    return 0
