"""Locate and read the package's YAML resources (platforms, catalog, workloads).

One place decides where shipped files live, so a source checkout, an installed wheel and a
colcon install (``share/twill_ros``) all resolve ``config/...`` and ``models/...`` alike.
``Fields`` gives loaders typed access whose errors name the file, the entry and the field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import yaml

PACKAGE = "twill_ros"
_REQUIRED: Any = object()
TOP = "top level"


def search_roots() -> tuple[Path, ...]:
    """Directories that may hold ``config/`` and ``models/``: the checkout, then the ROS share."""
    roots = [Path(__file__).resolve().parents[1]]
    try:  # only present when installed as a ROS package
        from ament_index_python.packages import get_package_share_directory

        roots.append(Path(get_package_share_directory(PACKAGE)))
    except Exception:  # noqa: BLE001 - missing module or package: fall back to the checkout
        pass
    return tuple(roots)


def find_resource(relpath: str | Path) -> Path:
    """Path of a shipped resource such as ``config/platforms/orin_nx_16gb.yaml``."""
    roots = search_roots()
    for root in roots:
        candidate = root / relpath
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(root / relpath) for root in roots)
    raise FileNotFoundError(f"resource '{relpath}' not found (tried {tried})")


def existing_file(path: Path, what: str = "file") -> Path:
    """``path`` if it is a file; else FileNotFoundError saying whether nothing is there or
    a directory is (reported as "not found", a directory sends one looking for a typo)."""
    if path.is_file():
        return path
    if path.is_dir():
        raise FileNotFoundError(f"{path} is a directory, not a {what}")
    raise FileNotFoundError(f"{what} not found: {path}")


def resolve_named(name_or_path: str | Path, subdir: str) -> Path:
    """A bare name (no suffix, no separator) -> ``<subdir>/<name>.yaml``; else the path itself."""
    text = str(name_or_path)
    if Path(text).suffix or "/" in text or "\\" in text:
        return existing_file(Path(text))
    return find_resource(f"{subdir}/{text}.yaml")


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load, but a key given twice in one mapping is an error: YAML's default of the
    last one winning would silently drop the first (``model: a`` then ``model: b``)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: list[Any] = []
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"found the key {key!r} twice", key_node.start_mark)
            seen.append(key)
        return super().construct_mapping(node, deep)


def load_yaml_mapping(path: Path, error: type[ValueError]) -> Fields:
    """Parse a YAML file whose top level must be a mapping."""
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from exc
    except yaml.YAMLError as exc:
        raise error(f"{path}: invalid YAML: {exc}") from exc
    except OSError as exc:      # e.g. no read permission: the commands report only ValueErrors
        raise error(f"{path}: cannot read the file: {exc.strerror}") from exc
    fields = Fields(data if data is not None else {}, str(path), TOP, error)
    if not isinstance(fields.data, Mapping):
        fields.fail("", "the file must contain a mapping")
    return fields


def _text_number_hint(value: Any) -> str:
    """Why a number written like ``1e3`` is text here: YAML 1.1, which PyYAML reads, takes
    a float with an exponent only with a decimal point and a signed exponent."""
    if isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", value):
        return (" (YAML reads this form as text: write a decimal point and a signed exponent, "
                "e.g. 1.0e+3 or 1.0e-3)")
    return ""


@dataclass(frozen=True)
class Fields:
    """Typed, validating view of one YAML mapping (a file's top level or one list entry)."""

    data: Any
    file: str
    entry: str
    error: type[ValueError]

    def fail(self, field: str, problem: str) -> NoReturn:
        where = f"{self.file}: {self.entry}"
        raise self.error(f"{where}: field '{field}': {problem}" if field else f"{where}: {problem}")

    def _get(self, key: str, default: Any) -> Any:
        if key in self.data and self.data[key] is not None:
            return self.data[key]
        if default is _REQUIRED:
            self.fail(key, "is required")
        return default

    def number(
        self,
        key: str,
        default: Any = _REQUIRED,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        positive: bool = False,
    ) -> float:
        value = self._get(key, default)
        return self.check_number(key, value, minimum=minimum, maximum=maximum, positive=positive)

    def check_number(
        self,
        key: str,
        value: Any,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        positive: bool = False,
    ) -> float:
        if value is None:
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(key, f"must be a number, got {value!r}{_text_number_hint(value)}")
        try:
            finite = math.isfinite(value)
        except OverflowError:       # an integer beyond a float's range
            self.fail(key, "must be a finite number, got an integer too large for a float")
        if not finite:
            self.fail(key, f"must be a finite number, got {value}")
        if positive and value <= 0:
            self.fail(key, f"must be > 0, got {value}")
        if minimum is not None and value < minimum:
            self.fail(key, f"must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            self.fail(key, f"must be <= {maximum}, got {value}")
        return float(value)

    def integer(self, key: str, default: Any = _REQUIRED, *, minimum: int | None = None) -> int:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"must be an integer, got {value!r}")
        if minimum is not None and value < minimum:
            self.fail(key, f"must be >= {minimum}, got {value}")
        return value

    def string(self, key: str, default: Any = _REQUIRED, *, choices: Sequence[str] = ()) -> str:
        value = self._get(key, default)
        if not isinstance(value, str):
            self.fail(key, f"must be a string, got {value!r}")
        if choices and value not in choices:
            self.fail(key, f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    def boolean(self, key: str, default: Any = _REQUIRED) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            self.fail(key, f"must be true or false, got {value!r}")
        return value

    def sequence(self, key: str, default: Any = _REQUIRED) -> list[Any]:
        value = self._get(key, default)
        if not isinstance(value, list):
            self.fail(key, f"must be a list, got {value!r}")
        return value

    def mapping(self, key: str, default: Any = _REQUIRED) -> dict[str, Any]:
        value = self._get(key, default)
        if not isinstance(value, Mapping):
            self.fail(key, f"must be a mapping, got {value!r}")
        return dict(value)

    def number_map(
        self,
        key: str,
        default: Any = _REQUIRED,
        *,
        keys: Sequence[str] = (),
        minimum: float | None = None,
        maximum: float | None = None,
        positive: bool = False,
    ) -> dict[str, float]:
        """A ``{name: number}`` mapping; ``keys`` restricts the allowed names."""
        raw = self.mapping(key, default)
        out = {}
        for name, value in raw.items():
            if keys and name not in keys:
                self.fail(f"{key}.{name}", f"unknown key; expected one of {', '.join(keys)}")
            out[str(name)] = self.check_number(
                f"{key}.{name}", value, minimum=minimum, maximum=maximum, positive=positive
            )
        return out

    def entries(
        self, key: str, label: str, id_key: str = "name", default: Any = _REQUIRED
    ) -> list[Fields]:
        """The list under ``key`` as ``Fields``, each named ``<label> '<id>'`` (or by index)."""
        out = []
        for index, item in enumerate(self.sequence(key, default)):
            ident = item.get(id_key) if isinstance(item, Mapping) else None
            entry = f"{label} '{ident}'" if ident not in (None, "") else f"{label} #{index}"
            if self.entry != TOP:
                entry = f"{self.entry}, {entry}"
            child = Fields(item, self.file, entry, self.error)
            if not isinstance(item, Mapping):
                child.fail("", "must be a mapping")
            out.append(child)
        return out

    def unknown_keys(self, allowed: Sequence[str]) -> None:
        """Reject misspelled fields instead of silently ignoring them."""
        for key in self.data:
            if key not in allowed:
                self.fail(str(key), f"unknown field; expected one of {', '.join(allowed)}")
