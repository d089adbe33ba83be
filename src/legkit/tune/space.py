"""The search space of `legkit tune`: a YAML file beside the task's config, checked before any trial runs.

    src/legkit/configs/<task>.tune.yaml

    settings:                 # set in every trial, as --set (legkit tune --set wins over them)
      run.best_every: 250000  # evaluate every this many steps: what the pruner sees
    pruner:                   # Optuna's MedianPruner
      startup_trials: 5       # complete trials before any is pruned
      warmup_steps: 750000    # no trial is pruned before this many environment steps
    sampler:                  # Optuna's TPESampler
      startup_trials: 10      # random trials before TPE models the results
    params:                   # every key is a `--set` key of the task's config
      ppo.learning_rate: {low: 1.0e-4, high: 2.0e-3, log: true}   # float: a bound is not a whole number
      ppo.n_epochs: {low: 3, high: 8}                             # int: both bounds whole numbers
      ppo.net_arch: {choices: [[64, 64], [128, 128]]}             # categorical, any YAML values
      task.rewards.track_lin_vel.weight: {low: 0.75, high: 3.0, log: true}
    enqueue:                  # trials run before the sampler picks any (e.g. the shipped config, as baseline)
      - {ppo.learning_rate: 0.0005, ppo.n_epochs: 5}

Each parameter becomes one `--set KEY=VALUE` of its trial. Categorical choices that are not plain scalars
(lists such as a net_arch) are stored in Optuna as their YAML text ("[64, 64]"), since Optuna's choices must be
scalars. `check_space` applies every bound, every choice and every enqueued value, one at a time, through the
same machinery as `--set` (legkit.train.config.build_config), so that a wrong key or value is an error before
any trial starts; only combinations (a batch larger than the rollout, say) can still fail in a trial.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from legkit import LegkitError
from legkit.config import coerce, load_yaml, parse_set
from legkit.train.config import build_config, default_config_file

SECTIONS = ("settings", "pruner", "sampler", "params", "enqueue")
PRUNER_KEYS = {"startup_trials": 5, "warmup_steps": 0}
"""MedianPruner settings and their defaults: complete trials before pruning starts, and environment steps of a
trial before it can be pruned."""
SAMPLER_KEYS = {"startup_trials": 10}
"""TPESampler settings and their defaults: trials sampled at random before TPE takes over."""
SPEC_KEYS = ("low", "high", "log", "step", "choices")
_SCIENTIFIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
"""A number in exponent notation, e.g. 1e-4, which YAML 1.1 reads as a string."""


@dataclass(frozen=True)
class Param:
    """One dimension of the search: a config key and the values it may take."""

    key: str
    """The dotted `--set` key, e.g. ppo.learning_rate or task.rewards.track_lin_vel.weight."""
    kind: str
    """"float", "int" or "categorical"."""
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    """Sample on a log scale (bounds > 0)."""
    step: float | int | None = None
    """Sample only low + k * step."""
    choices: tuple = ()
    """Categorical values as Optuna stores them (scalars; other values as their YAML text)."""

    def candidates(self) -> list:
        """The values `check_space` applies: both bounds, or every choice (decoded)."""
        if self.kind == "categorical":
            return [decode(c) for c in self.choices]
        return [self.low, self.high]

    def contains(self, value: Any) -> bool:
        """Whether `value` (decoded, as in YAML) lies in this dimension."""
        if self.kind == "categorical":
            return encode(value) in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return self.low <= value <= self.high and (self.kind == "float" or float(value).is_integer())


@dataclass(frozen=True)
class Space:
    """A task's search space: fixed settings, pruner and sampler settings, parameters, enqueued trials."""

    params: tuple[Param, ...]
    settings: dict[str, Any] = field(default_factory=dict)
    pruner: dict[str, int] = field(default_factory=lambda: dict(PRUNER_KEYS))
    sampler: dict[str, int] = field(default_factory=lambda: dict(SAMPLER_KEYS))
    enqueue: tuple[dict, ...] = ()
    """Trials to run first, each {key: decoded value} for some or all parameters."""

    def keys(self) -> list[str]:
        return [p.key for p in self.params]

    def settings_sets(self) -> list[str]:
        return [as_set(k, v) for k, v in self.settings.items()]

    def to_dict(self) -> dict:
        """The space as the YAML mapping it came from (stored in the study, so that workers share it)."""
        params = {}
        for p in self.params:
            if p.kind == "categorical":
                params[p.key] = {"choices": [decode(c) for c in p.choices]}
            else:
                params[p.key] = {"low": p.low, "high": p.high, **({"log": True} if p.log else {}),
                                 **({"step": p.step} if p.step is not None else {})}
        return {"settings": dict(self.settings), "pruner": dict(self.pruner), "sampler": dict(self.sampler),
                "params": params, "enqueue": [dict(e) for e in self.enqueue]}


def encode(value: Any) -> Any:
    """A categorical choice as Optuna stores it: scalars as they are, anything else as YAML flow text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return _yaml_text(value)


def decode(choice: Any) -> Any:
    """The value of a stored categorical choice (inverse of `encode`)."""
    return yaml.safe_load(choice) if isinstance(choice, str) and choice[:1] in ("[", "{") else choice


def as_set(key: str, value: Any) -> str:
    """`key=value` as `--set` reads it back (the value written as YAML)."""
    return f"{key}={_yaml_text(value)}"


def _yaml_text(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text[:-3].strip() if text.endswith("\n...") else text  # a scalar document ends with '...'


def space_file(task: str) -> Path:
    """The search space packaged beside the task's config: legkit/configs/<task>.tune.yaml."""
    return default_config_file(task).with_name(f"{task}.tune.yaml")


def load_space(task: str, path: str | None = None) -> Space:
    """Read the search space of `task` (or the file `path`) and check its shape (not yet its keys)."""
    file = Path(path) if path else space_file(task)
    if not file.is_file():
        if path:
            raise LegkitError(f"--space '{path}' does not exist; give a search space YAML file")
        raise LegkitError(f"task '{task}' has no search space ({file.name} beside its config); write one and pass "
                          "it with --space FILE (see src/legkit/configs/go2-walk.tune.yaml)")
    return parse_space(load_yaml(str(file)), file.name)


def parse_space(tree: dict, where: str = "search space") -> Space:
    """A Space from its YAML mapping; a LegkitError naming the entry that is malformed."""
    unknown = [k for k in tree if k not in SECTIONS]
    if unknown:
        raise LegkitError(f"{where}: unknown section '{unknown[0]}'; valid sections: {', '.join(SECTIONS)}")
    raw = tree.get("params") or {}
    if not isinstance(raw, dict) or not raw:
        raise LegkitError(f"{where}: 'params' must map config keys to ranges, e.g. "
                          "ppo.learning_rate: {low: 1.0e-4, high: 1.0e-3, log: true}")
    params = tuple(_param(str(k), v, where) for k, v in raw.items())
    settings = tree.get("settings") or {}
    if not isinstance(settings, dict):
        raise LegkitError(f"{where}: 'settings' must map config keys to values, e.g. run.best_every: 250000")
    clash = [k for k in settings if k in raw]
    if clash:
        raise LegkitError(f"{where}: '{clash[0]}' is both a setting and a parameter; keep it in one of them")
    pruner = _counts(tree.get("pruner"), PRUNER_KEYS, f"{where}: pruner")
    sampler = _counts(tree.get("sampler"), SAMPLER_KEYS, f"{where}: sampler")
    enqueue = tree.get("enqueue") or []
    if not isinstance(enqueue, list) or not all(isinstance(e, dict) for e in enqueue):
        raise LegkitError(f"{where}: 'enqueue' must be a list of mappings from parameter keys to values")
    by_key = {p.key: p for p in params}
    for i, entry in enumerate(enqueue):
        for key, value in entry.items():
            if key not in by_key:
                raise LegkitError(f"{where}: enqueue[{i}]: '{key}' is not a parameter; parameters: "
                                  f"{', '.join(by_key)}")
            if not by_key[key].contains(_number(value)):
                raise LegkitError(f"{where}: enqueue[{i}]: {key} = {value!r} is outside its range "
                                  f"{_describe(by_key[key])}")
    return Space(params, dict(settings), pruner, sampler,
                 tuple({k: _number(v) for k, v in e.items()} for e in enqueue))


def _param(key: str, spec: Any, where: str) -> Param:
    if not isinstance(spec, dict):
        raise LegkitError(f"{where}: parameter '{key}' must be a mapping such as {{low: 0.9, high: 0.99}} or "
                          "{choices: [a, b]}")
    unknown = [k for k in spec if k not in SPEC_KEYS]
    if unknown:
        raise LegkitError(f"{where}: parameter '{key}': unknown entry '{unknown[0]}'; valid: {', '.join(SPEC_KEYS)}")
    if "choices" in spec:
        choices = spec["choices"]
        if set(spec) != {"choices"} or not isinstance(choices, list) or not choices:
            raise LegkitError(f"{where}: parameter '{key}': choices must be a non-empty list, given alone")
        encoded = tuple(encode(c) for c in choices)
        if len(set(map(repr, encoded))) != len(encoded):
            raise LegkitError(f"{where}: parameter '{key}': choices repeat a value")
        return Param(key, "categorical", choices=encoded)
    low, high, step = _number(spec.get("low")), _number(spec.get("high")), _number(spec.get("step"))
    for name, value in (("low", low), ("high", high), ("step", step)):
        if (value is not None or name != "step") and (isinstance(value, bool) or not isinstance(value, (int, float))
                                                     or not math.isfinite(value)):
            raise LegkitError(f"{where}: parameter '{key}': {name} must be a finite number, got {value!r}")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise LegkitError(f"{where}: parameter '{key}': log must be true or false, got {log!r}")
    if not low < high:
        raise LegkitError(f"{where}: parameter '{key}': low ({low}) must be below high ({high})")
    if log and low <= 0:
        raise LegkitError(f"{where}: parameter '{key}': a log scale needs low > 0, got {low}")
    if log and step is not None:
        raise LegkitError(f"{where}: parameter '{key}': give either log or step, not both")
    if step is not None and step <= 0:
        raise LegkitError(f"{where}: parameter '{key}': step must be > 0, got {step}")
    whole = all(isinstance(v, int) for v in (low, high) + ((step,) if step is not None else ()))
    return Param(key, "int" if whole else "float", low, high, log, step)


def _number(value: Any) -> Any:
    """YAML 1.1 reads 1e-4 (no dot) as a string: read such strings as the numbers they are."""
    return float(value) if isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()) else value


def _counts(section: Any, defaults: dict[str, int], where: str) -> dict[str, int]:
    section = section or {}
    if not isinstance(section, dict):
        raise LegkitError(f"{where} must be a mapping; valid keys: {', '.join(defaults)}")
    out = dict(defaults)
    for k, v in section.items():
        if k not in defaults:
            raise LegkitError(f"{where}: unknown key '{k}'; valid keys: {', '.join(defaults)}")
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise LegkitError(f"{where}: {k} must be a whole number >= 0, got {v!r}")
        out[k] = v
    return out


def _describe(p: Param) -> str:
    if p.kind == "categorical":
        return f"(choices: {', '.join(_yaml_text(decode(c)) for c in p.choices)})"
    return f"[{p.low}, {p.high}]"


def default_budget(task: str, sets: list[str]) -> int:
    """Steps per trial when --steps is not given: the last run.total_steps among `sets`, else the task's own."""
    for item in reversed(sets):
        parts, value = parse_set(item)
        if parts == ["run", "total_steps"]:
            return coerce(int, value, "run.total_steps")
    return build_config(task).run.total_steps


def check_space(space: Space, task: str, sets: list[str], where: str = "search space") -> None:
    """Apply the space's settings and `sets`, then every bound, choice and enqueued value one at a time, through
    build_config as `--set` would; a LegkitError naming the parameter and what is wrong or valid.

    A value that fails only together with another parameter (its error names that parameter: a batch larger
    than the rollout of the task's own n_steps, say) is left to the trials, where such a combination fails as
    a bad config; so is a base config whose only fault is the value of a parameter the trials set."""
    settings = space.settings_sets()
    given = {s.split("=", 1)[0].strip() for s in sets}
    for p in space.params:
        if p.key in given:
            raise LegkitError(f"--set {p.key} fixes a parameter of the search space ({where}); remove one of them")
    try:
        build_config(task, sets=[*settings, *sets])
    except LegkitError as exc:
        if not _names_parameter(str(exc), space.keys()):
            raise LegkitError(f"{exc} (in what every trial shares before its parameters: the space's settings and "
                              "--set)") from None
    for p in space.params:
        others = [k for k in space.keys() if k != p.key]
        for value in p.candidates() + [e[p.key] for e in space.enqueue if p.key in e]:
            try:
                build_config(task, sets=[*settings, *sets, as_set(p.key, value)])
            except LegkitError as exc:
                if not _names_parameter(str(exc), others):
                    raise LegkitError(f"{where}: parameter {p.key} = {_yaml_text(value)}: {exc}") from None


def reference_config(task: str, space: Space, sets: list[str]):
    """A valid config of the space, for what all trials share (evaluation interval, success bar): the one without
    parameters, else the first enqueued trial's, else every parameter at its first or at its last candidate.
    A LegkitError when none of them is valid (no trial could run)."""
    settings = space.settings_sets()
    tries = [[]] + [[as_set(k, v) for k, v in e.items()] for e in space.enqueue]
    tries += [[as_set(p.key, p.candidates()[end]) for p in space.params] for end in (0, -1)]
    first = None
    for extra in tries:
        try:
            return build_config(task, sets=[*settings, *sets, *extra])
        except LegkitError as exc:
            first = first or exc
    if not _names_parameter(str(first), space.keys()):  # not the parameters' doing: what every trial shares
        raise LegkitError(f"{first} (in what every trial shares before its parameters: the space's settings and "
                          "--set)")
    raise LegkitError(f"no trial of the search space could run: {first} (without parameters, and with each "
                      "enqueued trial, and with every parameter at its first or last value)")


def _names_parameter(message: str, keys: list[str]) -> bool:
    """Whether a config error `message` is about one of `keys` (it names the dotted key, as they all do)."""
    return any(re.search(rf"(?<![\w.]){re.escape(k)}(?![\w.])", message) for k in keys)


def suggest(trial, space: Space) -> dict[str, Any]:
    """Draw a value for every parameter from an Optuna trial: {key: decoded value}."""
    values = {}
    for p in space.params:
        if p.kind == "categorical":
            values[p.key] = decode(trial.suggest_categorical(p.key, list(p.choices)))
        elif p.kind == "int":
            values[p.key] = trial.suggest_int(p.key, p.low, p.high, step=p.step or 1, log=p.log)
        else:
            values[p.key] = trial.suggest_float(p.key, float(p.low), float(p.high), step=p.step, log=p.log)
    return values


def enqueued_params(space: Space) -> list[dict]:
    """The enqueued trials as Optuna's enqueue_trial takes them (categorical values encoded)."""
    kinds = {p.key: p.kind for p in space.params}
    return [{k: encode(v) if kinds[k] == "categorical" else v for k, v in e.items()} for e in space.enqueue]
