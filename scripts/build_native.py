"""Compile the scheduler core and the twin with mypyc into build/native/ (twill_ros.native).

    python scripts/build_native.py

The same sources compiled to C: the results are the same, the twin about twice as fast.
The build is stamped with a hash of the sources; after an edit the Python modules are used
again until the next build (scripts/setup.sh rebuilds when the stamp is stale).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["TWILL_NATIVE"] = "0"    # twill_ros.native itself must be the Python module here

from mypyc.build import mypycify  # noqa: E402
from setuptools import setup  # noqa: E402

from twill_ros.native import NATIVE_DIR, NATIVE_MODULES, STAMP, sources_digest  # noqa: E402

WORK = ROOT / "build" / "native-work" / sys.implementation.cache_tag


def main() -> int:
    os.chdir(ROOT)          # mypyc names modules by their path relative to the working dir
    shutil.rmtree(NATIVE_DIR, ignore_errors=True)
    digest = sources_digest()
    setup(name="twill_ros_native", packages=[], script_args=[
              "--quiet", "build_ext", "--build-lib", str(NATIVE_DIR),
              "--build-temp", str(WORK / "temp")],
          ext_modules=mypycify(["--follow-imports=silent", "--ignore-missing-imports",
                                *NATIVE_MODULES], opt_level="3", target_dir=str(WORK)))
    STAMP.write_text(digest + "\n", encoding="utf-8")
    print(f"compiled {len(NATIVE_MODULES)} modules into {NATIVE_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
