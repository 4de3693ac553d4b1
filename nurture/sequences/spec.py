"""The sequence folder format (sequence.yaml + one Markdown body per step), validated.

A folder is read and checked as a whole before anything touches the database, so a bad
file is refused with its name (and line, where YAML gives one) and nothing is half-applied.
"""

from __future__ import annotations

import difflib
import re
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from nurture.content.render import check_step_templates, sample_context
from nurture.errors import NurtureError
from nurture.sequences.schedule import (
    QuietDays,
    SendWindow,
    is_valid_timezone,
    parse_delay,
    parse_quiet_day,
)

SLUG = r"^[a-z0-9][a-z0-9-]{0,99}$"


class SpecError(NurtureError):
    pass


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FromSpec(_Strict):
    name: str = Field(min_length=1, max_length=100)
    email: EmailStr


class ConsultSpec(_Strict):
    url: str
    text: str = Field(default="Book a free consult", min_length=1, max_length=200)
    # Leads into the button at the foot of every email.
    note: str = Field(default="", max_length=500)

    @field_validator("url")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not v.startswith(("https://", "http://")):
            raise ValueError("consult.url must be an absolute http(s) URL")
        return v


class WindowSpec(_Strict):
    start: str = "09:00"
    end: str = "11:00"
    days: list[str] = Field(
        default_factory=lambda: ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    )
    # A first step with delay 0 goes out right after confirmation, whatever the hour: the
    # reader just asked for it and is waiting. Later steps always keep to the window.
    first_step_immediately: bool = True


class StepSpec(_Strict):
    key: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,99}$")
    delay: str
    subject: str = Field(min_length=1, max_length=200)
    body: str
    sources: list[str] = Field(default_factory=list)
    # Filled from the body file when the folder is loaded.
    body_text: str = ""

    @field_validator("delay", mode="before")
    @classmethod
    def _delay(cls, v: Any) -> str:
        parse_delay(v)
        return str(v)

    @property
    def delay_seconds(self) -> int:
        return int(parse_delay(self.delay).total_seconds())


class DiscreetSpec(_Strict):
    """For readers who share or fear a watched inbox: nothing visible names the subject."""

    # Off keeps the block ready for a practice to switch on; present and on means every
    # email of the sequence goes out under the neutral name and subjects.
    enabled: bool = True
    from_name: str = Field(min_length=1, max_length=100)
    # step key -> neutral subject; a step without one keeps its own subject.
    subjects: dict[str, str] = Field(default_factory=dict)


def _quiet_day_text(v: Any) -> Any:
    # An unquoted 2027-04-05 reaches us as a date; keep the text form the file meant.
    return v.isoformat() if isinstance(v, date) else v


def _check_quiet_day(v: str) -> str:
    parse_quiet_day(v)
    return v


# Each date is checked on its own, so an error names the item (and its line).
QuietDay = Annotated[str, BeforeValidator(_quiet_day_text), AfterValidator(_check_quiet_day)]


class SequenceSpec(_Strict):
    slug: str = Field(pattern=SLUG)
    name: str = Field(min_length=1, max_length=200)
    from_: FromSpec = Field(alias="from")
    reply_to: EmailStr | None = None
    consult: ConsultSpec
    postal_address: str = Field(min_length=5, max_length=300)
    timezone: str = "UTC"
    send_window: WindowSpec = Field(default_factory=WindowSpec)
    # Reader-local dates with no mail: "12-25" every year, "2027-04-05" once.
    quiet_days: list[QuietDay] = Field(default_factory=list)
    # Neutral From name and subjects for readers who share an inbox (see the content docs).
    discreet: DiscreetSpec | None = None
    tracking: dict[str, bool] | None = None
    # What a reader's reply does to their place in this sequence: hold it until the
    # practice resumes it (`subscribers resume`), end it, or carry on.
    on_reply: Literal["pause", "stop", "continue"] = "pause"
    article: dict[str, str] | None = None
    steps: list[StepSpec] = Field(min_length=1)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        if not is_valid_timezone(v):
            raise ValueError(f"unknown time zone {v!r} (use an IANA name like Europe/London)")
        return v

    @field_validator("send_window")
    @classmethod
    def _window(cls, v: WindowSpec) -> WindowSpec:
        SendWindow.from_config(v.model_dump(exclude={"first_step_immediately"}))
        return v

    @field_validator("quiet_days")
    @classmethod
    def _some_day_left(cls, v: list[str]) -> list[str]:
        QuietDays.parse(list(v))
        return v

    @field_validator("steps")
    @classmethod
    def _unique_keys(cls, v: list[StepSpec]) -> list[StepSpec]:
        seen: set[str] = set()
        for step in v:
            if step.key in seen:
                raise ValueError(f"duplicate step key {step.key!r}")
            seen.add(step.key)
        return v

    @model_validator(mode="after")
    def _discreet_keys(self) -> SequenceSpec:
        if self.discreet:
            unknown = set(self.discreet.subjects) - {step.key for step in self.steps}
            if unknown:
                raise ValueError(f"discreet.subjects names unknown steps: {sorted(unknown)}")
        return self

    def settings_dict(self) -> dict[str, Any]:
        settings = self.model_dump(mode="json", by_alias=True, exclude={"steps", "slug", "name"})
        if not settings["quiet_days"]:
            del settings["quiet_days"]  # sequences stored before quiet days compare equal
        return settings

    @property
    def window(self) -> SendWindow:
        return SendWindow.from_config(
            self.send_window.model_dump(exclude={"first_step_immediately"}), list(self.quiet_days)
        )


def _line_of(raw: str, loc: tuple[Any, ...]) -> int | None:
    """Best effort: the line in sequence.yaml where the failing field sits."""
    try:
        node: Any = yaml.compose(raw)
    except yaml.YAMLError:
        return None
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == part), None)
            if match is None:
                break
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
        else:
            break
        line = node.start_mark.line + 1
    return line


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys without a word; a sequence file that says
    `delay:` twice is a mistake the operator should hear about."""


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if isinstance(key, str) and key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping
)


def _duplicate_step(raw: str, data: dict[str, Any], path: Path) -> None:
    steps = data.get("steps")
    if not isinstance(steps, list):
        return
    seen: set[str] = set()
    for i, step in enumerate(steps):
        key = step.get("key") if isinstance(step, dict) else None
        if isinstance(key, str) and key in seen:
            line = _line_of(raw, ("steps", i, "key"))
            raise SpecError(f"{path}:{line}: step {i + 1}: key: duplicate step key {key!r}")
        if isinstance(key, str):
            seen.add(key)


def _step_name(index: int, key: Any) -> str:
    """A step as `nurture sequences show` numbers it: from 1, with its key when it has one."""
    return f"step {index + 1}" + (f" ({key})" if isinstance(key, str) and key else "")


def _field_name(loc: tuple[Any, ...], data: dict[str, Any]) -> str:
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        steps = data.get("steps")
        step = steps[loc[1]] if isinstance(steps, list) and loc[1] < len(steps) else None
        name = _step_name(loc[1], step.get("key") if isinstance(step, dict) else None)
        rest = ".".join(str(p) for p in loc[2:])
        return f"{name}: {rest}" if rest else name
    return ".".join(str(p) for p in loc)


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed where an unknown key `loc` was found (for a did-you-mean)."""
    model: type[BaseModel] = SequenceSpec
    parent = [p for p in loc[:-1] if not isinstance(p, int)]
    for part in parent:
        field = next((f for n, f in model.model_fields.items() if (f.alias or n) == part), None)
        inner = getattr(field, "annotation", None) if field else None
        inner = next(
            (a for a in getattr(inner, "__args__", (inner,)) if isinstance(a, type)), inner
        )
        if not (isinstance(inner, type) and issubclass(inner, BaseModel)):
            return []
        model = inner
    return [f.alias or n for n, f in model.model_fields.items() if n != "body_text"]


def _validation_message(exc: ValidationError, raw: str, data: dict[str, Any], path: Path) -> str:
    # An unknown key explains the rest: `dealy: 1d` also makes `delay` "missing", and the
    # operator should read about the typo, not about the symptom.
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    err = errors[0]
    loc = tuple(err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        unknown = str(loc[-1])
        msg = f"unknown key {unknown!r}"
        close = difflib.get_close_matches(unknown, _known_keys(loc), n=1)
        if close:
            msg += f" (did you mean {close[0]!r}?)"
        loc_named = loc[:-1]
    else:
        loc_named = loc
    line = _line_of(raw, loc) or _line_of(raw, loc_named)
    where = f"{path}:{line}" if line else str(path)
    field = _field_name(loc_named, data)
    return f"{where}: {field}: {msg}" if field else f"{where}: {msg}"


def _discreet_subjects(raw: str, data: dict[str, Any], path: Path) -> None:
    """discreet.subjects must name steps that exist; say which line names one that does not."""
    discreet, steps = data.get("discreet"), data.get("steps")
    subjects = discreet.get("subjects") if isinstance(discreet, dict) else None
    if not isinstance(subjects, dict) or not isinstance(steps, list):
        return
    keys = [st.get("key") for st in steps if isinstance(st, dict)]
    for name in subjects:
        if name not in keys:
            line = _line_of(raw, ("discreet", "subjects", name))
            where = f"{path}:{line}" if line else str(path)
            raise SpecError(
                f"{where}: discreet.subjects: {name!r} is not a step key "
                f"(steps: {', '.join(str(k) for k in keys)})"
            )


def _check_templates(spec: SequenceSpec, folder: Path, raw: str, path: Path) -> None:
    """Name the file and line of a template error: the body file, or sequence.yaml for a
    subject."""
    sample = sample_context(
        consult_url=spec.consult.url,
        consult_text=spec.consult.text,
        postal_address=spec.postal_address,
        practice_name=spec.from_.name,
    )
    neutral = spec.discreet.subjects if spec.discreet else {}
    for i, step in enumerate(spec.steps):
        try:
            check_step_templates(
                sample, step.key, step.subject, step.body_text, neutral.get(step.key)
            )
        except ValueError as exc:
            if f"{step.key!r} discreet subject" in str(exc):
                line = _line_of(raw, ("discreet", "subjects", step.key))
                raise SpecError(f"{path}:{line}: discreet.subjects.{step.key}: {exc}") from None
            if f"{step.key!r} subject" in str(exc):
                line = _line_of(raw, ("steps", i, "subject"))
                raise SpecError(
                    f"{path}:{line}: {_step_name(i, step.key)}: subject: {exc}"
                ) from None
            m = re.search(r"at line (\d+)", str(exc))
            where = f"{folder / step.body}:{m.group(1)}" if m else str(folder / step.body)
            raise SpecError(f"{where}: {exc}") from None


def load_folder(folder: Path) -> SequenceSpec:
    path = folder / "sequence.yaml"
    if not path.is_file():
        raise SpecError(f"{folder}: no sequence.yaml in this folder")
    raw = path.read_text(encoding="utf-8")
    try:
        data = yaml.load(raw, Loader=_UniqueKeyLoader)  # a SafeLoader: no arbitrary objects
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or "not valid YAML"
        context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and start and (not mark or start.line != mark.line):
            problem += f" ({context} started at line {start.line + 1})"
        raise SpecError(f"{where}: {problem}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping with slug, name, steps ...")
    _duplicate_step(raw, data, path)
    _discreet_subjects(raw, data, path)
    try:
        spec = SequenceSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_validation_message(exc, raw, data, path)) from None
    steps = []
    for i, step in enumerate(spec.steps):
        body_path = folder / step.body
        if not body_path.is_file() or body_path.resolve().parent != folder.resolve():
            line = _line_of(raw, ("steps", i, "body"))
            raise SpecError(
                f"{path}:{line}: {_step_name(i, step.key)}: body: no file {step.body!r} in {folder}"
            )
        steps.append(step.model_copy(update={"body_text": body_path.read_text(encoding="utf-8")}))
    spec = spec.model_copy(update={"steps": steps})
    _check_templates(spec, folder, raw, path)
    return spec


def find_folders(path: Path) -> list[Path]:
    """PATH is one sequence folder, or a folder holding several."""
    if not path.exists():
        raise SpecError(f"{path}: no such file or folder")
    if (path / "sequence.yaml").is_file():
        return [path]
    if path.is_file() and path.name == "sequence.yaml":
        return [path.parent]
    found = sorted(p.parent for p in path.glob("*/sequence.yaml"))
    if not found:
        raise SpecError(f"{path}: no sequence.yaml here or in its subfolders")
    return found


def load_path(path: Path) -> list[tuple[Path, SequenceSpec]]:
    """Every sequence under PATH, all checked before any is used: one bad file refuses all."""
    specs = [(folder, load_folder(folder)) for folder in find_folders(path)]
    seen: dict[str, Path] = {}
    for folder, spec in specs:
        if spec.slug in seen:
            raise SpecError(f"{folder}: slug {spec.slug!r} is also used by {seen[spec.slug]}")
        seen[spec.slug] = folder
    return specs
