"""docs/ARCHITECTURE.md shows excerpts of the platform file and the catalog; they must not drift
from the files they quote (they once showed figures that were in neither)."""

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
QUOTED = {
    "name: orin_nx_16gb": ROOT / "config" / "platforms" / "orin_nx_16gb.yaml",
    "reference_platform: orin_nx_16gb": ROOT / "models" / "catalog.yaml",
}


def _excerpts() -> list[tuple[str, str]]:
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    return [(first, block) for block in blocks for first in QUOTED if block.startswith(first)]


def _assert_quoted(shown, real, where: str) -> None:
    """Every value the excerpt shows is the file's ('...' stands for an omitted value)."""
    if shown in ("...", ["..."]):
        return
    if isinstance(shown, dict):
        assert isinstance(real, dict), where
        for key, value in shown.items():
            assert key in real, f"{where}.{key} is not in the file"
            _assert_quoted(value, real[key], f"{where}.{key}")
    elif isinstance(shown, list) and shown and isinstance(shown[0], dict):
        for item in shown:
            key = next((k for k in ("name", "id") if k in item), None)
            if key:     # units, modes and models by name; other entries (interference) whole
                match = [r for r in real if r.get(key) == item[key]]
            else:
                match = [r for r in real if all(r.get(k) == v for k, v in item.items())]
            assert match, f"{where}: {item} is not in the file"
            _assert_quoted(item, match[0], f"{where}[{item.get(key, '')}]")
    else:
        assert shown == pytest.approx(real) if isinstance(real, float) else shown == real, (
            f"{where}: the document shows {shown!r}, the file has {real!r}")


def test_both_excerpts_are_found():
    assert sorted(first for first, _ in _excerpts()) == sorted(QUOTED)


@pytest.mark.parametrize("first", sorted(QUOTED))
def test_excerpt_matches_the_file(first):
    block = dict(_excerpts())[first]
    _assert_quoted(yaml.safe_load(block), yaml.safe_load(QUOTED[first].read_text()), first)
