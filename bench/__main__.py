"""Run every benchmark: each module bench/<name>.py that defines main()."""
from __future__ import annotations

import importlib
import pkgutil

import bench


def main() -> None:
    for info in sorted(pkgutil.iter_modules(bench.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"bench.{info.name}")
        run = getattr(module, "main", None)
        if callable(run):
            print(f"## bench.{info.name}\n", flush=True)
            run([])
            print(flush=True)


if __name__ == "__main__":
    main()
