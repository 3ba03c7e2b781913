"""Load policy YAML files: name resolution, ``extends:`` merging, and line-numbered errors.

The YAML is composed into nodes (not loaded straight to dicts) so every key keeps its line.
Files are merged as plain data first and validated once, so a child may override just one
field of a parent's category. An error names the file and line where the offending key was
written, and the dotted field path.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from safetext.errors import PolicyError  # noqa: F401 - re-exported
from safetext.policy.schema import Policy

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
Path_ = tuple[str | int, ...]
Locations = dict[Path_, tuple[str, int]]


def policies_dir() -> Path:
    """The shipped policies: the data package ``safetext.policies``.

    In a source checkout it is the top-level ``policies/`` folder (the editable install
    maps it); in an installed wheel it is ``safetext/policies/`` inside site-packages.
    """
    import importlib

    package = importlib.import_module("safetext.policies")
    return Path(next(iter(package.__path__))).resolve()


def resolve_policy_path(name: str | Path, *, relative_to: Path | None = None) -> Path:
    """Find a policy file by path or short name, in this order: the path as given
    (relative to ``relative_to`` for ``extends:``, else the current folder), then the
    shipped policies (``default``, ``strict``, ``policies/strict.yaml``,
    ``tenants/example-tenant``). ``.yaml`` may be left off."""
    raw = Path(name).expanduser()
    candidates: list[Path] = []
    if raw.is_absolute():
        candidates.append(raw)
    else:
        if relative_to is not None:
            candidates.append(relative_to / raw)
        candidates.append(Path.cwd() / raw)
        shipped = policies_dir()
        parts = raw.parts[1:] if raw.parts and raw.parts[0] == "policies" else raw.parts
        if parts:
            candidates.append(shipped.joinpath(*parts))
    for candidate in list(candidates):
        if candidate.suffix not in (".yaml", ".yml"):
            candidates.append(candidate.with_name(candidate.name + ".yaml"))
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    tried = ", ".join(str(c) for c in dict.fromkeys(candidates))
    raise PolicyError([(str(name), None, "", f"policy file not found (tried {tried})")])


def _compose(path: Path) -> tuple[Any, Locations]:
    """Parse one YAML file into plain data and a map from field path to (file, line)."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise PolicyError([(file, line, "", "file is not valid UTF-8")]) from None
    except OSError as exc:
        raise PolicyError([(file, None, "", f"cannot read policy: {exc.strerror}")]) from None
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise PolicyError([(file, line, "", f"invalid YAML: {exc.problem or exc}")]) from None
    finally:
        loader.dispose()
    locations: Locations = {}

    constructor = yaml.constructor.SafeConstructor()

    def scalar(n: yaml.ScalarNode) -> Any:
        if n.tag == "tag:yaml.org,2002:str":
            return n.value
        try:
            return constructor.construct_object(n, deep=True)
        except yaml.YAMLError as exc:
            raise PolicyError([(file, n.start_mark.line + 1, "", f"invalid value: {exc}")]) from None

    def build_all(n: yaml.Node | None, path_: Path_) -> Any:
        if n is None:
            return None
        if isinstance(n, yaml.ScalarNode):
            locations.setdefault(path_, (file, n.start_mark.line + 1))
            return scalar(n)
        if isinstance(n, yaml.MappingNode):
            locations.setdefault(path_, (file, n.start_mark.line + 1))
            out: dict[str, Any] = {}
            for key_node, value_node in n.value:
                key = scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else None
                line = key_node.start_mark.line + 1
                if key is None or isinstance(key, (list, dict)):
                    raise PolicyError([(file, line, _dotted(path_), "keys must be plain strings")])
                key = str(key)
                if key in out:
                    raise PolicyError([(file, line, _dotted(path_ + (key,)), "duplicate key")])
                locations[path_ + (key,)] = (file, line)
                out[key] = build_all(value_node, path_ + (key,))
            return out
        if isinstance(n, yaml.SequenceNode):
            locations.setdefault(path_, (file, n.start_mark.line + 1))
            return [build_all(item, path_ + (i,)) for i, item in enumerate(n.value)]
        raise PolicyError([(file, n.start_mark.line + 1, _dotted(path_), "unsupported YAML node")])

    data = build_all(node, ())
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PolicyError([(file, 1, "", "a policy must be a YAML mapping")])
    return data, locations


def _dotted(path_: Path_) -> str:
    return ".".join(str(p) for p in path_)


def _merge(base: dict[str, Any], child: dict[str, Any], base_loc: Locations, child_loc: Locations, prefix: Path_ = ()) -> None:
    """Deep-merge ``child`` into ``base`` in place; mappings merge, everything else is replaced.

    ``allow`` lists are unions: a child policy adds innocent words, it never forgets its parent's.
    """
    for key, value in child.items():
        path_ = prefix + (key,)
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value, base_loc, child_loc, path_)
            base_loc[path_] = child_loc.get(path_, base_loc.get(path_, ("?", 0)))
            continue
        if path_ == ("allow",) and isinstance(value, list) and isinstance(base.get(key), list):
            offset = len(base[key])
            base[key] = base[key] + value
            for p, loc in child_loc.items():
                if p[:1] == ("allow",) and len(p) > 1 and isinstance(p[1], int):
                    base_loc[("allow", p[1] + offset) + p[2:]] = loc
            continue
        base[key] = value
        for p in [p for p in base_loc if p[: len(path_)] == path_]:
            del base_loc[p]
        for p, loc in child_loc.items():
            if p[: len(path_)] == path_:
                base_loc[p] = loc


@dataclass
class LoadedPolicy:
    """Merged raw data plus provenance, before validation."""

    data: dict[str, Any]
    locations: Locations
    files: list[Path] = field(default_factory=list)


def _load_raw(path: Path, stack: tuple[Path, ...]) -> LoadedPolicy:
    if path in stack:
        chain = " -> ".join(str(p) for p in stack + (path,))
        raise PolicyError([(str(path), None, "extends", f"circular extends: {chain}")])
    data, locations = _compose(path)
    parents = data.get("extends", [])
    if isinstance(parents, str):
        parents = [parents]
    if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
        line = locations.get(("extends",), (str(path), None))[1]
        raise PolicyError([(str(path), line, "extends", "must be a file name or a list of file names")])
    merged: dict[str, Any] = {}
    merged_loc: Locations = {}
    files: list[Path] = []
    for i, parent in enumerate(parents):
        try:
            parent_path = resolve_policy_path(parent, relative_to=path.parent)
        except PolicyError:
            line = locations.get(("extends", i), locations.get(("extends",), (str(path), None)))[1]
            raise PolicyError([(str(path), line, f"extends.{i}", f"extended policy {parent!r} not found")]) from None
        loaded = _load_raw(parent_path, stack + (path,))
        _merge(merged, loaded.data, merged_loc, loaded.locations)
        files += [f for f in loaded.files if f not in files]
    child = {k: v for k, v in data.items()}
    _merge(merged, child, merged_loc, locations)
    merged["extends"] = [str(p) for p in parents]
    files.append(path)
    return LoadedPolicy(merged, merged_loc, files)


def _locate(locations: Locations, loc: tuple[Any, ...], default_file: str) -> tuple[str, int | None]:
    path_ = tuple(loc)
    while True:
        if path_ in locations:
            return locations[path_]
        if not path_:
            return default_file, None
        path_ = path_[:-1]


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Drop pydantic's union-branch labels (``Term``, ``str``...) so paths match the YAML."""
    labels = {"Term", "str", "list[str]", "bool", "none", "function-before[_shorthand(), Term]"}
    return tuple(p for p in loc if not (isinstance(p, str) and (p in labels or p.startswith(("function-", "list[")))))


def validate_loaded(loaded: LoadedPolicy) -> Policy:
    """Validate merged data; map every error to the file and line that caused it."""
    top = str(loaded.files[-1]) if loaded.files else "<policy>"
    try:
        policy = Policy.model_validate(loaded.data, context={"defer_semantics": True})
    except ValidationError as exc:
        problems = []
        seen = set()
        for err in exc.errors():
            loc = _clean_loc(err["loc"])
            file, line = _locate(loaded.locations, loc, top)
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = f"unknown key {loc[-1]!r}" if loc else "unknown key"
            key = (file, line, _dotted(loc), msg)
            if key not in seen:
                seen.add(key)
                problems.append(key)
        raise PolicyError(problems) from None
    problems = [(*_locate(loaded.locations, path_, top), _dotted(path_), msg) for path_, msg in policy.problems()]
    if problems:
        raise PolicyError(problems)
    return policy


def load_policy(name: str | Path = "default") -> Policy:
    """Load, merge and validate a policy by short name or path. Raises :class:`PolicyError`."""
    path = resolve_policy_path(name)
    loaded = _load_raw(path, ())
    policy = validate_loaded(loaded)
    policy._source = str(path)
    policy._files = [str(f) for f in loaded.files]
    return policy


def policy_fingerprint(policy: Policy) -> str:
    """A stable hash of the merged policy content; keys the compiled-lexicon cache."""
    blob = json.dumps(policy.model_dump(mode="json"), sort_keys=True, ensure_ascii=True)
    return hashlib.sha256(blob.encode()).hexdigest()
