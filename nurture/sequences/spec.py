"""The sequence folder format (sequence.yaml + one Markdown body per step), validated.

A folder is read and checked as a whole before anything touches the database, so a bad
file is refused with its name (and line, where YAML gives one) and nothing is half-applied.
Every mistake of every folder is reported at once: an operator fixes them in one pass, not
one run of `sequences apply` per mistake.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

from nurture.content.render import (
    TemplateProblem,
    check_step_templates,
    empty_name_lines,
    sample_context,
    wrapped_paragraph_lines,
)
from nurture.errors import NurtureError
from nurture.sequences.schedule import parse_delay
from nurture.sequences.settings import (
    ConsultSpec,
    DiscreetSpec,
    FromSpec,
    SequenceSettings,
    WindowSpec,
    _Strict,
)

__all__ = [
    "ConsultSpec", "DiscreetSpec", "FromSpec", "SequenceSpec", "SpecError", "StepSpec",
    "WindowSpec", "load_folder", "load_path",
]  # fmt: skip

SLUG = r"^[a-z0-9][a-z0-9-]{0,99}$"
# How a reader without a name should be greeted; said with every warning about one.
GREETING_HINT = 'write {{ subscriber.first_name | default("there") }}'


class SpecError(NurtureError):
    """Every mistake found, each as `file:line: where: what`; one per line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        if len(problems) == 1:
            text = problems[0]
        else:
            text = f"{len(problems)} mistakes, nothing was changed:\n" + "\n".join(
                f"  {p}" for p in problems
            )
        super().__init__(text)


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


def _mistake(kind: str, message: str, loc: tuple[str | int, ...], **ctx: Any) -> InitErrorDetails:
    return InitErrorDetails(
        type=PydanticCustomError(kind, message, ctx or None), loc=loc, input=None
    )


def _again(err: ErrorDetails) -> InitErrorDetails:
    return InitErrorDetails(
        type=err["type"], loc=err["loc"], input=err["input"], ctx=err.get("ctx", {})
    )


class SequenceSpec(SequenceSettings):
    """A sequence.yaml: its settings (SequenceSettings) plus slug, name and steps."""

    # The file is strict where stored settings are lenient: a misspelt key is a mistake.
    model_config = ConfigDict(extra="forbid", populate_by_name=False)

    slug: str = Field(pattern=SLUG)
    name: str = Field(min_length=1, max_length=200)
    steps: list[StepSpec] = Field(min_length=1)

    @model_validator(mode="wrap")
    @classmethod
    def _keys_name_steps(cls, data: Any, handler: Callable[[Any], SequenceSpec]) -> SequenceSpec:
        """Step keys are unique, and discreet.subjects names only steps that exist. Checked
        on the file's own data, beside every other mistake: after-validators would only run
        once the rest is right, and the operator would meet these one run later."""
        errors: list[InitErrorDetails] = []
        try:
            spec = handler(data)
        except ValidationError as exc:
            errors = [_again(err) for err in exc.errors()]
        errors += _step_key_mistakes(data)
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return spec

    def settings_dict(self) -> dict[str, Any]:
        """What the database keeps: the settings part, as SequenceSettings reads it back."""
        settings = self.model_dump(
            mode="json", by_alias=True, include=set(SequenceSettings.model_fields)
        )
        if not settings["quiet_days"]:
            del settings["quiet_days"]  # sequences stored before quiet days compare equal
        return settings


def _step_key_mistakes(data: Any) -> list[InitErrorDetails]:
    steps = data.get("steps") if isinstance(data, dict) else None
    if not isinstance(steps, list):
        return []
    keys = [step.get("key") if isinstance(step, dict) else None for step in steps]
    found: list[InitErrorDetails] = []
    seen: set[str] = set()
    for i, key in enumerate(keys):
        if isinstance(key, str) and key in seen:
            found.append(
                _mistake(
                    "duplicate_step", "duplicate step key '{key}'", ("steps", i, "key"), key=key
                )
            )
        if isinstance(key, str):
            seen.add(key)
    discreet = data.get("discreet")
    subjects = discreet.get("subjects") if isinstance(discreet, dict) else None
    if isinstance(subjects, dict):
        listed = ", ".join(str(k) for k in keys)
        for name in subjects:
            if name not in keys:
                found.append(
                    _mistake(
                        "discreet_step",
                        "'{name}' is not a step key (steps: {steps})",
                        ("discreet", "subjects", str(name)),
                        name=str(name),
                        steps=listed,
                    )
                )
    return found


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


@dataclass
class _Findings:
    """What checking one folder found: mistakes refuse it, warnings only inform."""

    mistakes: list[tuple[str, int, str]] = field(default_factory=list)  # (file, line, text)
    warnings: list[str] = field(default_factory=list)

    def add(self, path: Path, line: int | None, text: str) -> None:
        self.mistakes.append(
            (str(path), line or 0, f"{path}:{line}: {text}" if line else f"{path}: {text}")
        )

    def ordered(self) -> list[str]:
        return [text for *_, text in sorted(self.mistakes, key=lambda m: (m[0], m[1]))]


def _validation_mistakes(
    exc: ValidationError, raw: str, data: dict[str, Any], path: Path, found: _Findings
) -> None:
    errors = exc.errors()
    # An unknown key explains a missing one: `dealy: 1d` also makes `delay` "missing", and
    # the operator should read about the typo, not about its symptom.
    meant: set[tuple[Any, ...]] = set()
    for err in errors:
        if err["type"] == "extra_forbidden":
            loc = tuple(err["loc"])
            close = difflib.get_close_matches(str(loc[-1]), _known_keys(loc), n=1)
            meant.update((*loc[:-1], name) for name in close)
    for err in errors:
        loc = tuple(err["loc"])
        if err["type"] == "missing" and loc in meant:
            continue
        msg = err["msg"].removeprefix("Value error, ")
        named, naming = loc, data
        if err["type"] == "extra_forbidden":
            unknown = str(loc[-1])
            msg = f"unknown key {unknown!r}"
            close = difflib.get_close_matches(unknown, _known_keys(loc), n=1)
            if close:
                msg += f" (did you mean {close[0]!r}?)"
            named = loc[:-1]
        elif err["type"] == "discreet_step":
            named = loc[:-1]
        elif err["type"] == "duplicate_step":
            naming = {**data, "steps": None}  # a duplicate is named by its number alone
        line = _line_of(raw, loc) or _line_of(raw, named)
        name = _field_name(named, naming)
        found.add(path, line, f"{name}: {msg}" if name else msg)


def _mapping(value: Any) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any, fallback: str) -> str:
    return value if isinstance(value, str) and value else fallback


def _check_steps(
    folder: Path, raw: str, data: dict[str, Any], path: Path, found: _Findings
) -> dict[int, str]:
    """Read each step's body file and check its templates, whatever else is wrong with the
    file: the body text of each step that has one, by index."""
    steps = data.get("steps")
    consult, sender = _mapping(data.get("consult")), _mapping(data.get("from"))
    neutral = _mapping(_mapping(data.get("discreet")).get("subjects"))
    sample = sample_context(
        consult_url=_text(consult.get("url"), "https://example.invalid/book"),
        consult_text=_text(consult.get("text"), "Book a free consult"),
        postal_address=_text(data.get("postal_address"), "1 Example Street"),
        practice_name=_text(sender.get("name"), "The practice"),
    )
    bodies: dict[int, str] = {}
    for i, step in enumerate(steps if isinstance(steps, list) else []):
        if not isinstance(step, dict) or not isinstance(step.get("body"), str):
            continue
        name = _step_name(i, step.get("key"))
        body_path = folder / step["body"]
        if not body_path.is_file() or body_path.resolve().parent != folder.resolve():
            line = _line_of(raw, ("steps", i, "body"))
            found.add(path, line, f"{name}: body: no file {step['body']!r} in {folder}")
            continue
        bodies[i] = body_path.read_text(encoding="utf-8")
        subject, key = _text(step.get("subject"), ""), step.get("key")
        discreet_subject = neutral[key] if isinstance(neutral.get(key), str) else None
        for problem in check_step_templates(sample, subject, bodies[i], discreet_subject):
            _template_mistake(problem, i, name, str(key), raw, path, body_path, found)
        for line in empty_name_lines(bodies[i]):
            found.warnings.append(
                f"{body_path}:{line}: a reader who gave no name reads a gap here "
                f'("Hi ,"): {GREETING_HINT}'
            )
        for line in wrapped_paragraph_lines(bodies[i]):
            found.warnings.append(
                f"{body_path}:{line}: this paragraph looks wrapped at a fixed width; a single "
                "line break shows in the letter, so write the paragraph on one line"
            )
        if empty_name_lines(subject):
            line = _line_of(raw, ("steps", i, "subject"))
            found.warnings.append(
                f"{path}:{line}: {name}: subject: a reader who gave no name reads a gap "
                f"here: {GREETING_HINT}"
            )
    return bodies


def _template_mistake(
    problem: TemplateProblem,
    index: int,
    name: str,
    key: str,
    raw: str,
    path: Path,
    body_path: Path,
    found: _Findings,
) -> None:
    """Where a template mistake is: the body file's own line, or the line of sequence.yaml
    that holds the subject."""
    if problem.part == "body":
        found.add(body_path, problem.line, f"{name}: body: {problem.message}")
    elif problem.part == "discreet subject":
        line = _line_of(raw, ("discreet", "subjects", key))
        found.add(path, line, f"discreet.subjects.{key}: {problem.message}")
    else:
        line = _line_of(raw, ("steps", index, "subject"))
        found.add(path, line, f"{name}: subject: {problem.message}")


def _read_folder(folder: Path, found: _Findings) -> SequenceSpec | None:
    path = folder / "sequence.yaml"
    if not path.is_file():
        found.add(folder, None, "no sequence.yaml in this folder")
        return None
    raw = path.read_text(encoding="utf-8")
    try:
        data = yaml.load(raw, Loader=_UniqueKeyLoader)  # a SafeLoader: no arbitrary objects
    except yaml.YAMLError as exc:
        # Past a YAML mistake nothing of the file can be trusted: this one mistake is all.
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or "not valid YAML"
        context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and start and (not mark or start.line != mark.line):
            problem += f" ({context} started at line {start.line + 1})"
        found.add(path, mark.line + 1 if mark else None, problem)
        return None
    if not isinstance(data, dict):
        found.add(path, None, "expected a mapping with slug, name, steps ...")
        return None
    bodies = _check_steps(folder, raw, data, path, found)
    try:
        spec = SequenceSpec.model_validate(data)
    except ValidationError as exc:
        _validation_mistakes(exc, raw, data, path, found)
        return None
    if found.mistakes:
        return None
    steps = [st.model_copy(update={"body_text": bodies[i]}) for i, st in enumerate(spec.steps)]
    return spec.model_copy(update={"steps": steps})


def load_folder(folder: Path, warnings: list[str] | None = None) -> SequenceSpec:
    """One sequence folder, checked as a whole: SpecError lists every mistake in it. Warnings
    (a greeting that can read "Hi ,") go to `warnings` when given."""
    found = _Findings()
    spec = _read_folder(folder, found)
    if warnings is not None:
        warnings += found.warnings
    if spec is None:
        raise SpecError(found.ordered())
    return spec


def find_folders(path: Path) -> list[Path]:
    """PATH is one sequence folder, or a folder holding several."""
    if not path.exists():
        raise SpecError([f"{path}: no such file or folder"])
    if (path / "sequence.yaml").is_file():
        return [path]
    if path.is_file() and path.name == "sequence.yaml":
        return [path.parent]
    found = sorted(p.parent for p in path.glob("*/sequence.yaml"))
    if not found:
        raise SpecError([f"{path}: no sequence.yaml here or in its subfolders"])
    return found


def load_path(path: Path, warnings: list[str] | None = None) -> list[tuple[Path, SequenceSpec]]:
    """Every sequence under PATH, all checked before any is used: one bad file refuses all,
    and SpecError lists the mistakes of every folder."""
    found = _Findings()
    specs: list[tuple[Path, SequenceSpec]] = []
    seen: dict[str, Path] = {}
    for folder in find_folders(path):
        spec = _read_folder(folder, found)
        if spec is None:
            continue
        if spec.slug in seen:
            found.add(folder, None, f"slug {spec.slug!r} is also used by {seen[spec.slug]}")
        seen[spec.slug] = folder
        specs.append((folder, spec))
    if warnings is not None:
        warnings += found.warnings
    if found.mistakes:
        raise SpecError(found.ordered())
    return specs
