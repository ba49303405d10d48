"""`slomo-rig devices`: list the cameras this machine can see."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from rig.discovery import SDKS, find_all


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("devices", help="list connected cameras (all backends)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=devices)


def devices(args: argparse.Namespace) -> int:
    notes: list[str] = []
    searched: list[str] = []
    found = find_all(notes, searched)
    if getattr(args, "json", False):
        print(
            json.dumps(
                {"devices": [asdict(d) for d in found], "searched": searched, "notes": notes},
                indent=2,
            )
        )
        return 0
    if not found:
        where = ", ".join(f"{b} ({SDKS.get(b, 'its SDK')})" for b in searched)
        where = where or "no backend (no SDK installed)"
        print(
            f"No cameras found; searched {where}. Check cables and power, and that no other "
            "program holds the camera."
        )
        if "basler" in searched:
            print("  To try without hardware: PYLON_CAMEMU=1 slomo-rig devices (pylon's emulator)")
    else:
        print(f"{'backend':<12} {'kind':<7} {'model':<28} serial")
        for d in found:
            extra = f"  ({d.note})" if d.note else ""
            print(f"{d.backend:<12} {d.kind:<7} {d.model:<28} {d.serial}{extra}")
    for n in notes:
        print(f"note: {n}")
    return 0
