"""Profiles: a YAML file becomes a validated `Profile`, or one ProfileError line naming file, line and key.

Shipped profiles live in `profiles/` at the repository root (`default`, `maintenance-window`, `inventory-refresh`,
`lab`) and install as the package `otprobe.profiles`; `load_profile("lab")` finds them by name,
`load_profile("site.yaml")` loads a user's file. Line numbers come from composing the YAML node tree (every key
and list item keeps its start mark) and mapping each pydantic error location to the nearest node that exists.

A profile is a file a user hands over, so reading it is bounded before anything walks it: the file is at most
64 KiB (a real profile is a few KiB), and while the YAML is composed the loader refuses nesting deeper than 32
levels (the composer recurses once per level) and documents of more than 10,000 values once aliases are
expanded (a "billion laughs" file of a few hundred bytes otherwise expands into gigabytes when the document is
walked). Each refusal is one `file:line` error like any other.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from inspect import isclass
from ipaddress import IPv4Network
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails

from otprobe import userfile
from otprobe.contract import SYN_WAIT_S, Float, Int, ProbeOptions, Timeouts
from otprobe.errors import ProfileError
from otprobe.pacing import config as pacing
from otprobe.probes import caution_operations, names, probe_class, probe_classes
from otprobe.safety import is_read_only
from otprobe.scope import Scope
from otprobe.windows import Window

# pip unpacks a wheel (and an editable install maps profiles/ in place), so the shipped profiles are plain files
# with a path, which the bounded reader needs and ProfileInfo shows
PROFILES_DIR = Path(str(resources.files("otprobe.profiles")))
MAX_PROFILE_BYTES = 64 * 1024
MAX_DEPTH = 32  # nesting levels; the deepest key a profile has is 4 levels down
MAX_ALIASES = 100
MAX_VALUES = 10_000  # YAML nodes once every alias is expanded; a real profile has a few hundred


class _At(ValueError):
    """A cross-field error that knows which key it is about, so the message can name that key's line."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


def _cidr(value: object) -> IPv4Network:
    if isinstance(value, IPv4Network):
        return value
    try:
        return IPv4Network(str(value))
    except ValueError as exc:
        raise ValueError(f"invalid IPv4 CIDR {value!r}: {exc}") from None


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
    return value


def _caution_operation(value: str) -> str:
    known = sorted(caution_operations())
    if value not in known:
        close = difflib.get_close_matches(value, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"no probe checks operation {value!r} against caution rules (known: "
                         f"{', '.join(known)}){hint}")
    return value


def _intrusive_problem(protocol: str, name: str) -> str | None:
    """Why `name` cannot be enabled as an intrusive operation of `protocol`'s probe, or None if it can.

    The same rules the link applies on the wire, checked when the profile is read: `profiles check` and a scan
    load profiles through the same code, so a profile either passes both or neither."""
    cls = probe_class(protocol)
    if problem := cls.intrusive_problem(name):
        return problem
    code = cls.operation(name).code
    if not is_read_only(cls.wire_protocol(), code):
        return f"{name!r} sends {code}, which is not on the read-only allowlist: it is never sent"
    return None


Cidr = Annotated[IPv4Network, BeforeValidator(_cidr)]
Rate = Annotated[Float, Field(gt=0, le=10_000)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ScopeConfig(_Strict):
    """`include` empty means nothing may be scanned until the user sets it (or passes --scope)."""

    include: list[Cidr] = []
    exclude: list[Cidr] = []


class ClassLimits(_Strict):
    """Caps for one device class: per device (`pps`, `burst`), the class in aggregate, and connection pacing."""

    pps: Rate
    burst: Int = Field(1, ge=1, le=2)  # burst 1 by default, at most 2
    class_pps: Rate | None = None
    connect_gap_s: Float = Field(2.0, ge=0, le=3600)
    max_session_s: Float = Field(10.0, gt=0, le=3600)


class AssignRule(_Strict):
    cidr: Cidr
    device_class: str = Field(alias="class")


class Protocols(_Strict):
    """`protocols:`, one section per registered probe, each validated by that probe's own `Options` model.

    The sections are not fields of this class: the registry decides which protocols exist (an installed probe adds
    its own), and no probe is loaded until a profile is read. A section the file leaves out gets its defaults.
    """

    model_config = ConfigDict(extra="allow")

    @model_validator(mode="wrap")
    @classmethod
    def _sections(cls, data: Any, handler: ModelWrapValidatorHandler[Protocols]) -> Protocols:
        if isinstance(data, Protocols):
            return data
        if not isinstance(data, dict):
            return handler(data)  # pydantic's own "must be a valid dictionary"
        errors: list[InitErrorDetails] = []
        for key in data:
            if key not in names():
                errors.append({"type": "extra_forbidden", "loc": (key,), "input": data[key]})
        sections: dict[str, ProbeOptions] = {}
        for probe in probe_classes():
            try:
                sections[probe.name] = probe.Options.model_validate(data.get(probe.name, {}))
            except ValidationError as exc:
                errors += [{"type": e["type"], "loc": (probe.name, *e["loc"]), "input": e["input"],
                            **({"ctx": e["ctx"]} if "ctx" in e else {})} for e in exc.errors()]
                continue
            for name in sections[probe.name].intrusive:
                if problem := _intrusive_problem(probe.name, name):
                    errors.append({"type": "value_error", "loc": (probe.name, "intrusive", name), "input": name,
                                   "ctx": {"error": ValueError(problem)}})
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return handler(sections)

    def section(self, protocol: str) -> ProbeOptions:
        """The validated options of one registered protocol."""
        section = (self.model_extra or {}).get(protocol)
        if section is None:
            raise KeyError(f"unknown protocol {protocol!r} (known: {', '.join(names())})")
        return section


class TimeoutConfig(_Strict):
    connect_s: Float = Field(SYN_WAIT_S, gt=0, le=60)  # more is accepted, and used as SYN_WAIT_S (contract.py)
    response_s: Float = Field(3.0, gt=0, le=60)


class BreakerConfig(_Strict):
    failures: Int = Field(2, ge=1, le=10)


class Caution(_Strict):
    """A site's own "do not send this to that model" rule, added to the shipped caution list."""

    pattern: Annotated[str, AfterValidator(_regex)]  # regex searched in the model name and order code
    skip: Annotated[str, AfterValidator(_caution_operation)]  # an operation some probe checks caution rules for
    source: str = Field(min_length=1)  # why: an advisory, an incident, a vendor note


_CLASS_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


class Profile(_Strict):
    """A validated scan profile. Conservative where the file is silent; refuses what it does not know.

    - Unknown keys and duplicate keys are errors; every rate is > 0; `burst` is 1 unless raised, and at most 2.
    - `classes` must define `unknown`, the class of every target no `assign` rule matches (first match wins).
    - `scope.include` empty refuses every target; the shipped generic profiles leave it empty on purpose.
      An include wider than /16 is allowed: one scan resolves at most 65,536 addresses anyway.
    - `windows` empty means the profile does not restrict when it runs; otherwise a scan runs only inside one.
    - `protocols.<name>` is checked by that probe's own options model; an intrusive operation is enabled only by
      name with a written reason.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    # the site its scans belong to in a central inventory (`--site` overrides); the SQLite file is one site
    site: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    scope: ScopeConfig = ScopeConfig()
    global_pps: Rate = 10.0
    classes: dict[str, ClassLimits] = {"unknown": ClassLimits(pps=0.5)}
    assign: list[AssignRule] = []
    protocols: Protocols = Field(default_factory=lambda: Protocols.model_validate({}))
    timeouts: TimeoutConfig = TimeoutConfig()
    retries: Int = Field(1, ge=0, le=3)
    breaker: BreakerConfig = BreakerConfig()
    windows: list[Window] = []
    max_devices_in_flight: Int = Field(8, ge=1, le=256)
    max_addresses_in_flight: Int = Field(32, ge=1, le=1024)
    max_packets_per_device: Int | None = Field(None, ge=1, le=10_000)
    cautions: list[Caution] = []

    @model_validator(mode="after")
    def _classes_consistent(self) -> Profile:
        for name in self.classes:
            if not _CLASS_NAME.match(name):
                raise _At(("classes", name), f"class name {name!r}: use lower-case letters, digits, '-' and '_'")
        if "unknown" not in self.classes:
            raise _At(("classes",), "must define the class 'unknown' (targets no assign rule matches get it)")
        for index, rule in enumerate(self.assign):
            if rule.device_class not in self.classes:
                raise _At(
                    ("assign", index, "class"),
                    f"unknown class {rule.device_class!r} (defined: {', '.join(sorted(self.classes))})",
                )
        return self

    @property
    def assign_pairs(self) -> list[tuple[IPv4Network, str]]:
        return [(rule.cidr, rule.device_class) for rule in self.assign]

    def limits(self, device_class: str) -> ClassLimits:
        return self.classes.get(device_class, self.classes["unknown"])

    def target_scope(self, include: Sequence[str] | None = None) -> Scope:
        """The scope to resolve targets with; `include` (e.g. from --scope) replaces scope.include."""
        return Scope(self.scope.include if include is None else include, self.scope.exclude, self.assign_pairs)

    def protocol_options(self, protocol: str) -> ProbeOptions:
        """One protocol's section, the `options` its Probe is constructed with."""
        return self.protocols.section(protocol)

    def enabled_intrusive(self, protocol: str) -> frozenset[str]:
        return frozenset(self.protocols.section(protocol).intrusive)

    def intrusive_pairs(self) -> frozenset[tuple[str, str]]:
        """(protocol, operation) for every intrusive operation the profile enables, as the link checks them."""
        return frozenset((protocol, op) for protocol in names() for op in self.enabled_intrusive(protocol))


# --- YAML with line numbers -------------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads an unquoted clock time (02:00) as text, not as YAML 1.1's base-60 integer 120, and
    refuses, while composing and so before anything walks the document, too deep nesting and alias bombs."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0
        self._values = 0  # nodes composed so far, an alias counting as every node it stands for
        # id(node) -> how many nodes it stands for once its aliases are expanded; absent while it is being composed
        self._expanded: dict[int, int] = {}

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        mark = self.peek_event().start_mark
        is_alias = self.check_event(yaml.AliasEvent)
        if is_alias:
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _Refused(f"more than {MAX_ALIASES} YAML aliases: refused", mark)
        elif self._depth >= MAX_DEPTH:
            raise _Refused(f"YAML nested deeper than {MAX_DEPTH} levels: refused", mark)
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if is_alias and id(node) not in self._expanded:
            raise _Refused("a YAML alias inside its own anchor (a recursive value): refused", mark)
        if not is_alias:
            children: list[yaml.Node] = []
            if isinstance(node, yaml.SequenceNode):
                children = node.value
            elif isinstance(node, yaml.MappingNode):
                children = [part for pair in node.value for part in pair]
            self._expanded[id(node)] = 1 + sum(self._expanded[id(child)] for child in children)
        self._values += self._expanded[id(node)] if is_alias else 1
        if self._values > MAX_VALUES:
            raise _Refused(f"more than {MAX_VALUES:,} YAML values (aliases expanded): refused", mark)
        return node

    def fetch_flow_collection_start(self, TokenClass: type) -> None:
        # A limit in the scanner too: on a run of thousands of `[` it would otherwise keep a possible key for each
        # level and take seconds, before the composer is asked for the first node below them.
        if self.flow_level >= MAX_DEPTH:
            raise _Refused(f"YAML nested deeper than {MAX_DEPTH} levels: refused", self.get_mark())
        super().fetch_flow_collection_start(TokenClass)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except ValueError as exc:  # e.g. an integer beyond Python's 4300-digit limit, a timestamp out of range
            raise yaml.constructor.ConstructorError(None, None, f"unreadable value: {exc}", node.start_mark) from None


class _Refused(yaml.MarkedYAMLError):
    """A document over one of the loader's limits; the mark is where the limit was crossed."""

    def __init__(self, problem: str, mark: yaml.Mark) -> None:
        super().__init__(problem=problem, problem_mark=mark)


_Loader.yaml_implicit_resolvers = {key: list(value) for key, value in yaml.SafeLoader.yaml_implicit_resolvers.items()}
for _digit in "0123456789":
    _Loader.yaml_implicit_resolvers.setdefault(_digit, []).insert(
        0, ("tag:yaml.org,2002:str", re.compile(r"^\d{1,2}:\d{2}$"))
    )

Loc = tuple[str | int, ...]
_SHOULD = re.compile(r"^(?:Input|String|List|Dictionary|Value) should")


def _line_map(node: yaml.Node, path: Loc, lines: dict[Loc, int], problems: list[tuple[int, str]]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            here = (*path, str(key_node.value))
            if here in lines:
                problems.append((key_node.start_mark.line + 1, f"{_dotted(here)}: duplicate key"))
            lines[here] = key_node.start_mark.line + 1
            _line_map(value_node, here, lines, problems)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _line_map(item, (*path, index), lines, problems)


def _dotted(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _line_of(loc: Loc, lines: dict[Loc, int]) -> int:
    for end in range(len(loc), 0, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The model class found by walking `loc` down from Profile (through dicts and lists), if any."""
    current: Any = Profile
    for part in loc:
        if current is Protocols:  # its sections are the registered probes' own models
            if part not in names():
                return None
            current = probe_class(str(part)).Options
        elif isclass(current) and issubclass(current, BaseModel):
            fields = {field.alias or name: field for name, field in current.model_fields.items()}
            if part not in fields:
                return None
            current = fields[part].annotation
        elif get_origin(current) in (dict, list):
            current = get_args(current)[-1]
        else:
            return None
    return current if isclass(current) and issubclass(current, BaseModel) else None


def _keys(model: type[BaseModel]) -> list[str]:
    if model is Protocols:
        return list(names())
    return [field.alias or name for name, field in model.model_fields.items()]


def _message(error: dict[str, Any]) -> tuple[Loc, str]:
    loc: Loc = tuple(error["loc"])
    kind, value = error["type"], error.get("input")
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        allowed = sorted(_keys(model)) if model else []
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return loc, f"unknown key (allowed: {', '.join(allowed)}){hint}"
    if kind == "missing":
        return loc, "required key is missing"
    if kind == "value_error":
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, _At):
            return (*loc, *cause.loc), str(cause)
        return loc, str(cause) if cause is not None else error["msg"]
    text = _SHOULD.sub("must", error["msg"])
    if not isinstance(value, dict | list):
        text += f" (got {value!r})"
    return loc, text


class ProfileValidationError(ProfileError):
    """A ProfileError whose `problems` lists every error found, one line each; str() is the first of them."""

    def __init__(self, problems: list[str]) -> None:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(problems[0] + more)
        self.problems = problems


def parse_profile(text: str, source: str, default_name: str = "profile") -> Profile:
    """Validate profile YAML `text`; `source` is the file name used in messages."""
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:  # the reader checks every character before a node exists
        line = text.count("\n", 0, exc.position) + 1
        raise ProfileValidationError([f"{source}:{line} YAML error: {exc.reason} (U+{exc.character:04X})"]) from None
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        kind = "" if isinstance(exc, _Refused) else "YAML syntax error: "
        raise ProfileValidationError([f"{source}:{line} {kind}{exc.problem or exc.context}"]) from None
    except yaml.YAMLError as exc:
        raise ProfileValidationError([f"{source}:1 YAML error: {exc}"]) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise ProfileValidationError([f"{source}:1 a profile is a mapping of keys (name, scope, classes, ...)"])
    lines: dict[Loc, int] = {}
    problems: list[tuple[int, str]] = []
    _line_map(node, (), lines, problems)
    data.setdefault("name", default_name)
    try:
        profile = Profile.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            loc, text = _message(error)
            prefix = f"{_dotted(loc)}: " if loc else ""
            problems.append((_line_of(loc, lines), prefix + text))
    if problems:
        problems.sort(key=lambda item: item[0])
        raise ProfileValidationError([f"{source}:{line} {text}" for line, text in problems]) from None
    return profile


def _shipped_path(name: str) -> Path:
    path = PROFILES_DIR / f"{name}.yaml"
    if not path.is_file():
        shipped = ", ".join(p.stem for p in sorted(PROFILES_DIR.glob("*.yaml")))
        raise ProfileError(f"unknown profile {name!r} (shipped: {shipped}); give a file path for your own profile")
    return path


def _is_path(name_or_path: str | Path) -> bool:
    text = str(name_or_path)
    return isinstance(name_or_path, Path) or "/" in text or "\\" in text or text.endswith((".yaml", ".yml"))


def recorded_ref(name_or_path: str | Path) -> str:
    """How a scan records its profile: a shipped name as given, a file as its absolute path, so that
    `scan --resume` finds the same file from whatever folder it is run in."""
    return str(Path(name_or_path).resolve()) if _is_path(name_or_path) else str(name_or_path)


def load_profile(name_or_path: str | Path) -> Profile:
    """A shipped profile by bare name (`lab`), or a profile file by path (`site.yaml`, `./profiles/x.yaml`)."""
    text = str(name_or_path)
    is_path = _is_path(name_or_path)
    path = Path(text) if is_path else _shipped_path(text)
    try:
        content = userfile.read_text(path, MAX_PROFILE_BYTES)
    except userfile.UserFileError as exc:
        raise ProfileError(f"{text}: cannot read profile: {exc}") from None
    return parse_profile(content, str(path) if is_path else f"profiles/{path.name}", default_name=path.stem)


@dataclass(frozen=True)
class ProfileInfo:
    name: str
    description: str
    path: Path


def list_profiles() -> list[ProfileInfo]:
    """Shipped profiles, by name, each validated."""
    return [
        ProfileInfo(path.stem, load_profile(path).description, path) for path in sorted(PROFILES_DIR.glob("*.yaml"))
    ]


def scan_config(profile: Profile | None = None, *, deadline: float | None = None) -> pacing.ScanConfig:
    """The pacing config `profile` asks for; without one, the profile model's defaults: a library caller is paced
    exactly like a profile file that sets nothing. The one place pacing values come from (pacing/ sits below this
    module and knows no profile)."""
    if profile is None:
        profile = Profile(name="defaults")
    return pacing.ScanConfig(
        global_pps=profile.global_pps,
        classes={name: pacing.ClassLimits(**limits.model_dump()) for name, limits in profile.classes.items()},
        timeouts=Timeouts(min(profile.timeouts.connect_s, SYN_WAIT_S), profile.timeouts.response_s),
        retries=profile.retries,
        breaker_failures=profile.breaker.failures,
        max_devices_in_flight=profile.max_devices_in_flight,
        max_addresses_in_flight=profile.max_addresses_in_flight,
        max_packets_per_device=profile.max_packets_per_device,
        deadline=deadline,
        enabled_intrusive=profile.intrusive_pairs(),
    )
