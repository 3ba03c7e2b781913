"""Load policy YAML files: name resolution, ``extends:`` merging, and line-numbered errors.

The YAML is composed into nodes (not loaded straight to dicts) so every key keeps its line.
Files are merged as plain data first and validated once, so a child may override just one
field of a parent's category. An error names the file and line where the offending key was
written, and the dotted field path.

Policy files are untrusted input: a tenant may upload one. Every file is capped in size, in
nodes after alias expansion, in alias uses and in nesting depth, and ``extends:`` chains are
capped in depth and in files, so loading any file takes bounded time and memory.
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

MAX_POLICY_BYTES = 5 * 1024 * 1024
"""Largest policy file read; the shipped default lexicon is about 10 kB."""
MAX_YAML_NODES = 100_000
"""Most YAML nodes one load may describe, aliases expanded, extended files included (a term costs two)."""
MAX_YAML_ALIASES = 1_000
"""Most alias uses (``*name``) one file may contain."""
MAX_YAML_DEPTH = 32
"""Deepest nesting of mappings and lists in one file, aliases expanded; policies need 5."""
MAX_EXTENDS_DEPTH = 8
"""Longest ``extends:`` chain, counting the file loaded."""
MAX_EXTENDS_FILES = 32
"""Most files one load may read through ``extends:``, a file read twice counting twice."""

# The booleans a term's value may be: enable or disable it. YAML 1.1 also reads yes/no,
# on/off and y/n as booleans.
_YAML_TRUE_FALSE = frozenset("true True TRUE false False FALSE".split())
_BOOL_TAG = "tag:yaml.org,2002:bool"
_NULL_TAG = "tag:yaml.org,2002:null"


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


@dataclass
class _Budget:
    """What one load may still read, shared across its ``extends:`` tree."""

    files: int = MAX_EXTENDS_FILES
    nodes: int = MAX_YAML_NODES


def _read(path: Path) -> str:
    """The file's text, refusing files over :data:`MAX_POLICY_BYTES` before reading them whole."""
    file = str(path)
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_POLICY_BYTES + 1)
    except OSError as exc:
        raise PolicyError([(file, None, "", f"cannot read policy: {exc.strerror}")]) from None
    if len(raw) > MAX_POLICY_BYTES:
        raise PolicyError([(file, None, "", f"policy file is larger than {MAX_POLICY_BYTES // (1024 * 1024)} MB")])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise PolicyError([(file, line, "", "file is not valid UTF-8")]) from None


def _check_expansion(text: str, file: str, max_nodes: int = MAX_YAML_NODES) -> int:
    """Walk the YAML event stream once and refuse files that expand past the limits.

    Composing shares an aliased node instead of copying it, so a few hundred bytes can
    describe 10^9 nodes ("billion laughs") that only explode when turned into data, and an
    alias inside its own anchor describes an infinite structure. This pass counts nodes as
    the data would hold them, from each anchor's expanded size, without building anything.
    Returns that count; ``max_nodes`` is what the load has left of :data:`MAX_YAML_NODES`.
    """
    loader = _Loader(text)
    expanded: dict[str, tuple[int, int]] = {}  # anchor -> (nodes, height) once expanded
    open_: list[list[Any]] = []  # per open collection: [anchor, nodes, height]
    open_anchors: set[str] = set()
    total = aliases = 0

    too_many = f"more than {MAX_YAML_NODES} YAML nodes once aliases are expanded (extended files included)"

    def refuse(line: int, message: str) -> PolicyError:
        return PolicyError([(file, line, "", message)])

    try:
        while True:
            event = loader.get_event()
            if isinstance(event, yaml.StreamEndEvent):
                return total
            line = event.start_mark.line + 1
            if isinstance(event, yaml.CollectionStartEvent):
                total += 1
                if event.anchor is not None:
                    open_anchors.add(event.anchor)
                open_.append([event.anchor, 1, 1])
                if len(open_) > MAX_YAML_DEPTH:
                    raise refuse(line, f"nested deeper than {MAX_YAML_DEPTH} levels")
                if total > max_nodes:
                    raise refuse(line, too_many)
                continue
            if isinstance(event, yaml.CollectionEndEvent):
                anchor, nodes, height = open_.pop()
                if anchor is not None:
                    open_anchors.discard(anchor)
                    expanded[anchor] = (nodes, height)
            elif isinstance(event, yaml.AliasEvent):
                aliases += 1
                if aliases > MAX_YAML_ALIASES:
                    raise refuse(line, f"more than {MAX_YAML_ALIASES} aliases")
                if event.anchor in open_anchors:
                    raise refuse(line, f"alias *{event.anchor} is inside its own anchor &{event.anchor} (an endless structure)")
                if event.anchor not in expanded:
                    raise refuse(line, f"alias *{event.anchor} names no earlier anchor")
                nodes, height = expanded[event.anchor]
                total += nodes
                if total > max_nodes:
                    raise refuse(line, too_many)
                if len(open_) + height > MAX_YAML_DEPTH:
                    raise refuse(line, f"nested deeper than {MAX_YAML_DEPTH} levels once aliases are expanded")
            elif isinstance(event, yaml.ScalarEvent):
                nodes, height = 1, 1
                total += 1
                if event.anchor is not None:
                    expanded[event.anchor] = (1, 1)
                if total > max_nodes:
                    raise refuse(line, too_many)
            else:
                continue
            if open_:
                open_[-1][1] += nodes
                open_[-1][2] = max(open_[-1][2], height + 1)
    finally:
        loader.dispose()


def _term_slot(path_: Path_) -> bool:
    """A term's own value, or its ``enabled`` flag: where true and false are meant."""
    return path_[:1] == ("terms",) and (len(path_) == 3 or (len(path_) == 4 and path_[3] == "enabled"))


def _string_slot(path_: Path_) -> bool:
    """Where the schema wants words: targets (term or category) and allow entries."""
    if path_[:1] == ("terms",) and len(path_) >= 4:
        return isinstance(path_[3], int) or (path_[3] == "targets" and len(path_) <= 5)
    if path_[:1] == ("allow",):
        return len(path_) == 2
    return path_[:1] == ("categories",) and len(path_) in (3, 4) and path_[2:3] == ("targets",)


def _ambiguous(n: yaml.ScalarNode, path_: Path_, *, key: bool) -> str | None:
    """Why an unquoted YAML 1.1 boolean or null is refused here, or None when it is fine.

    Refused rather than read as a string: ``moron: no`` may mean "the target no" or
    "disable", and guessing either could leave a toxic word undetected. Quoting states the
    word; ``false`` stays the documented way to disable a term, and an empty value the way
    to use the category's targets. Elsewhere (``leetspeak: no``) a boolean is what the
    schema wants, so only keys, term values, targets and allow entries are checked.
    """
    if n.style:
        return None  # quoted
    word = n.value
    # PyYAML reads y and n as strings, so they are caught by spelling; the rest by the tag
    # the resolver gave them, which leaves an explicit ``!!str no`` alone.
    boolean = n.tag == _BOOL_TAG or word in ("y", "Y", "n", "N")
    null = n.tag == _NULL_TAG
    if key:
        if boolean or null:
            return f"key {word!r} is read by YAML as {'null' if null else 'a boolean'}, not a string; quote it: \"{word}\""
        return None
    if _term_slot(path_):
        if boolean and word not in _YAML_TRUE_FALSE:
            return f"{word!r} is read by YAML as a boolean; write false to disable the term, or quote it for the word: \"{word}\""
        if null and word and len(path_) == 3:
            return f"{word!r} is read by YAML as null; leave the value empty to use the category's targets, or quote it: \"{word}\""
        return None
    if _string_slot(path_) and (boolean or (null and word)):
        return f"{word!r} is read by YAML as {'null' if null else 'a boolean'}, not a word; quote it: \"{word}\""
    return None


def _compose(path: Path, budget: _Budget) -> tuple[Any, Locations]:
    """Parse one YAML file into plain data and a map from field path to (file, line)."""
    file = str(path)
    text = _read(path)
    loader = None
    try:
        budget.nodes -= _check_expansion(text, file, budget.nodes)
        loader = _Loader(text)
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise PolicyError([(file, line, "", f"invalid YAML: {exc.problem or exc}")]) from None
    except yaml.YAMLError as exc:
        raise PolicyError([(file, None, "", f"invalid YAML: {exc}")]) from None
    finally:
        if loader is not None:
            loader.dispose()
    locations: Locations = {}

    constructor = yaml.constructor.SafeConstructor()

    def scalar(n: yaml.ScalarNode, path_: Path_, *, key: bool = False) -> Any:
        line = n.start_mark.line + 1
        problem = _ambiguous(n, path_, key=key)
        if problem is not None:
            raise PolicyError([(file, line, _dotted(path_), problem)])
        if n.tag == "tag:yaml.org,2002:str":
            return n.value
        try:
            return constructor.construct_object(n, deep=True)
        except yaml.YAMLError as exc:
            raise PolicyError([(file, line, _dotted(path_), f"invalid value: {exc}")]) from None

    def build_all(n: yaml.Node | None, path_: Path_) -> Any:
        if n is None:
            return None
        if isinstance(n, yaml.ScalarNode):
            locations.setdefault(path_, (file, n.start_mark.line + 1))
            return scalar(n, path_)
        if isinstance(n, yaml.MappingNode):
            locations.setdefault(path_, (file, n.start_mark.line + 1))
            out: dict[str, Any] = {}
            for key_node, value_node in n.value:
                key = scalar(key_node, path_, key=True) if isinstance(key_node, yaml.ScalarNode) else None
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
    """The field path as written in errors; a part over 40 characters (a hostile key) is shortened."""
    parts = (str(p) for p in path_)
    return ".".join(p if len(p) <= 40 else p[:37] + "..." for p in parts)


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
    termless: list[Path] = field(default_factory=list)
    """Files with neither ``terms:`` nor ``extends:``, refused once the schema errors are reported."""


def _load_raw(path: Path, stack: tuple[Path, ...], budget: _Budget) -> LoadedPolicy:
    budget.files -= 1
    data, locations = _compose(path, budget)
    file = str(path)
    parents = data.get("extends", [])
    if isinstance(parents, str):
        parents = [parents]
    if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
        line = locations.get(("extends",), (file, None))[1]
        raise PolicyError([(file, line, "extends", "must be a file name or a list of file names")])
    merged: dict[str, Any] = {}
    merged_loc: Locations = {}
    files: list[Path] = []
    termless: list[Path] = []
    for i, parent in enumerate(parents):
        line = locations.get(("extends", i), locations.get(("extends",), (file, None)))[1]
        try:
            parent_path = resolve_policy_path(parent, relative_to=path.parent)
        except PolicyError:
            raise PolicyError([(file, line, f"extends.{i}", f"extended policy {parent!r} not found")]) from None
        chain = stack + (path, parent_path)
        if parent_path in stack + (path,):
            cycle = " -> ".join(str(p) for p in chain[chain.index(parent_path) :])
            raise PolicyError([(file, line, f"extends.{i}", f"circular extends: {cycle}")])
        if len(chain) > MAX_EXTENDS_DEPTH:
            shown = " -> ".join(str(p) for p in chain)
            raise PolicyError([(file, line, f"extends.{i}", f"extends chain longer than {MAX_EXTENDS_DEPTH} files: {shown}")])
        if budget.files <= 0:
            raise PolicyError([(file, line, f"extends.{i}", f"extends reads more than {MAX_EXTENDS_FILES} files in all")])
        loaded = _load_raw(parent_path, stack + (path,), budget)
        _merge(merged, loaded.data, merged_loc, loaded.locations)
        files += [f for f in loaded.files if f not in files]
        termless += [f for f in loaded.termless if f not in termless]
    child = {k: v for k, v in data.items()}
    _merge(merged, child, merged_loc, locations)
    merged["extends"] = [str(p) for p in parents]
    files.append(path)
    if not parents and "terms" not in data:
        termless.append(path)
    return LoadedPolicy(merged, merged_loc, files, termless)


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
    rank = {str(f): i for i, f in enumerate(loaded.files)}

    def written(path_: Path_) -> tuple[int, int]:
        file, line = _locate(loaded.locations, path_, top)
        return rank.get(file, len(rank)), line or 0

    problems = [(*_locate(loaded.locations, path_, top), _dotted(path_), msg) for path_, msg in policy.problems(written)]
    # An empty file or one that forgot its terms would load as a policy that allows everything.
    problems += [
        (str(f), 1, "terms", "a policy without extends must list terms; write terms: {} for one that detects nothing")
        for f in loaded.termless
    ]
    if problems:
        raise PolicyError(problems)
    return policy


def load_policy(name: str | Path = "default") -> Policy:
    """Load, merge and validate a policy by short name or path. Raises :class:`PolicyError`.

    The checks that need the compiled lexicon (a benign target that is itself detected, a
    term that can never match) run where the lexicon is built:
    :func:`safetext.policy.checks.check_compiled`. The policy keeps where each field was
    written, so those errors name the file and line too.
    """
    path = resolve_policy_path(name)
    loaded = _load_raw(path, (), _Budget())
    policy = validate_loaded(loaded)
    policy._source = str(path)
    policy._files = [str(f) for f in loaded.files]
    policy._locations = dict(loaded.locations)
    return policy


def policy_fingerprint(policy: Policy) -> str:
    """A stable hash of the merged policy content; keys the compiled-lexicon cache."""
    blob = json.dumps(policy.model_dump(mode="json"), sort_keys=True, ensure_ascii=True)
    return hashlib.sha256(blob.encode()).hexdigest()
