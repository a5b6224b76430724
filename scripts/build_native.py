"""Compile the scheduler core and the twin with mypyc into build/native/ (twill_ros.native).

    python scripts/build_native.py [--if-stale]

The same sources compiled to C: the results are the same, the twin about twice as fast.
The build is stamped with a hash of the sources; after an edit the Python modules are used
again until the next build (scripts/setup.sh runs this with --if-stale).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["TWILL_NATIVE"] = "0"    # twill_ros.native itself must be the Python module here

from mypyc.build import mypycify  # noqa: E402
from setuptools import setup  # noqa: E402

from twill_ros.native import (  # noqa: E402
    NATIVE_DIR,
    NATIVE_MODULES,
    STAMP,
    fresh,
    sources_digest,
)

WORK = ROOT / "build" / "native-work" / sys.implementation.cache_tag


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--if-stale", action="store_true",
                        help="do nothing when the build matches the sources")
    if parser.parse_args().if_stale and fresh():
        print(f"[native] compiled core up to date ({NATIVE_DIR.relative_to(ROOT)})")
        return 0
    print("[native] compiling the core and the twin with mypyc (about a minute; "
          "TWILL_NATIVE=0 skips it)", flush=True)
    os.chdir(ROOT)          # mypyc names modules by their path relative to the working dir
    shutil.rmtree(NATIVE_DIR, ignore_errors=True)
    digest = sources_digest()
    setup(name="twill_ros_native", packages=[], script_args=[
              "--quiet", "build_ext", "--build-lib", str(NATIVE_DIR),
              "--build-temp", str(WORK / "temp")],
          ext_modules=mypycify(["--follow-imports=silent", "--ignore-missing-imports",
                                *NATIVE_MODULES], opt_level="3", target_dir=str(WORK)))
    STAMP.write_text(digest + "\n", encoding="utf-8")
    print(f"[native] compiled {len(NATIVE_MODULES)} modules into {NATIVE_DIR.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
