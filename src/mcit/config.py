"""Run configuration: validated pydantic models, loaded from YAML plus ``key=value`` overrides.

Every model forbids unknown keys and describes every field, so ``mcit validate`` can reject a
typo before any compute is spent and the resolved config written into each run directory
says exactly what ran.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticUndefined

from mcit.errors import UserError, first_error
from mcit.training.settings import TrainConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoraConfig(_Strict):
    r: int = Field(8, ge=1, description="LoRA rank.")
    alpha: float = Field(16.0, gt=0, description="LoRA scaling numerator (scale = alpha / r, or alpha / sqrt(r) with rslora).")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA input.")
    rslora: bool = Field(False, description="Rank-stabilised LoRA scaling.")


class ModelConfig(_Strict):
    name: str = Field("tiny", description="'tiny' (built offline for the embedded world) or a local Hugging Face image-text-to-text checkpoint directory.")
    trainable: list[Literal["vision", "projector", "language_model"]] = Field(
        default_factory=lambda: ["vision", "projector", "language_model"],
        description="Parts trained with full weights. With `lora`, the language model's base weights stay frozen and its adapters train.",
    )
    lora: LoraConfig | None = Field(None, description="LoRA adapters on the language model's linear layers (peft); null for none.")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="Weights dtype.")
    max_length: int = Field(2048, ge=1, description="Longest sequence (text plus image tokens) a batch may hold; a longer sample stops the run with its length (truncating would cut image tokens). Multi-tile families (LLaVA-OneVision, InternVL) need thousands.")
    seed: int = Field(0, description="Seed of the tiny model's initialisation (ignored for checkpoints).")


class BaseStageConfig(_Strict):
    tasks: list[str] = Field(default_factory=lambda: ["describe", "arithmetic"], description="Embedded tasks of the joint base stage (instruction tuning before the stream).")
    samples_per_task: int = Field(3000, ge=1, description="Training samples per base task.")
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(epochs=4), description="Training settings of the base stage.")


class FileTaskConfig(_Strict):
    """A task of a file benchmark: its data files, scorer and answer length."""

    name: str = Field(description="Task name (a column of the accuracy matrix).")
    train: str | None = Field(None, description="Training file: LLaVA conversations (.json list or .jsonl), relative to benchmark.root. Required for the stream's tasks; absent for eval_only.")
    eval: str | None = Field(None, description="Evaluation file: LLaVA conversations (the last reply is the reference) or question/answer records (question_id, image, question, answer or answers), relative to benchmark.root. Required for stream tasks and eval_only; optional for a pool's datasets.")
    images: str | None = Field(None, description="Folder the records' image paths are relative to (relative to benchmark.root); null: each data file's own folder.")
    scorer: str = Field("exact_norm", description="Scorer of the evaluation answers (see `mcit ls`).")
    max_new_tokens: int = Field(16, ge=1, description="Generation budget of the evaluation answers.")
    template: str | None = Field(None, description="Prompt template with {question} for question/answer records that carry a bare question (e.g. '{question}\\nAnswer the question using a single word or phrase.'); conversation records keep their own text.")

    @field_validator("template")
    @classmethod
    def _has_question(cls, value: str | None) -> str | None:
        if value is not None and "{question}" not in value:
            raise ValueError(f"template must contain {{question}}, got {value!r}")
        return value

    @field_validator("scorer")
    @classmethod
    def _known_scorer(cls, value: str) -> str:
        from mcit.evaluation.scorers import SCORERS

        if value not in SCORERS:
            raise ValueError(SCORERS.unknown_message(value))
        return value


def _task_entry(value: Any) -> Any:
    """A mapping becomes a :class:`FileTaskConfig` here, so its errors name its own fields."""
    if isinstance(value, dict):
        try:
            return FileTaskConfig.model_validate(value)
        except ValidationError as error:
            name = value.get("name")
            raise ValueError(f"task {name!r}: {first_error(error)}" if isinstance(name, str) else first_error(error)) from None
    return value


TaskEntry = Annotated[str | FileTaskConfig, BeforeValidator(_task_entry)]


class BenchmarkConfig(_Strict):
    name: str = Field("embedded", description="Benchmark (see `mcit ls`): a built-in task stream ('embedded') or data pool ('lifelong'), or your own data files ('files': a stream, 'pool_files': a pool).")
    root: str | None = Field(None, description="Folder the data files of 'files'/'pool_files' tasks are relative to; a relative root is relative to the config file's folder, and null means that folder (the working directory without a config file). Stored resolved.")
    tasks: list[TaskEntry] | None = Field(None, description="Tasks of the stream (datasets of a pool benchmark), in order: names of a built-in benchmark, or for 'files'/'pool_files' one mapping per task (name, train, eval, scorer, max_new_tokens); null = the benchmark's own list.")
    eval_only: list[TaskEntry] | None = Field(None, description="Tasks evaluated after every step but never trained in the stream (e.g. language skills), in the same form as tasks; null = the benchmark's own list.")
    train_per_task: int | None = Field(None, ge=1, description="Training samples per task (per dataset of a pool benchmark); null = the benchmark's default (built-in: 2000; files: every record, else a seeded random subset of this size).")
    eval_per_task: int | None = Field(None, ge=1, description="Held-out evaluation samples per task (per skill of a pool benchmark); null = the benchmark's default (built-in: 200; files: every record).")
    base: BaseStageConfig | None = Field(default_factory=BaseStageConfig, description="Joint base stage before the stream (built-in benchmarks only); null to start the stream from the model as loaded.")

    @model_validator(mode="after")
    def _defaults_and_distinct(self) -> BenchmarkConfig:
        from mcit.benchmarks import BENCHMARKS

        try:
            benchmark = BENCHMARKS.get(self.name)
        except UserError as error:
            raise ValueError(str(error)) from None
        if self.tasks is None:
            self.tasks = list(benchmark.default_tasks)
        if self.eval_only is None:
            self.eval_only = list(benchmark.default_eval_only)
        default_train, default_eval = benchmark.default_sizes
        self.train_per_task = default_train if self.train_per_task is None else self.train_per_task
        self.eval_per_task = default_eval if self.eval_per_task is None else self.eval_per_task
        if benchmark.base_names is None and self.base is not None:
            if "base" in self.model_fields_set:
                raise ValueError(f"benchmark {self.name!r} has no base-stage data: set base: null")
            self.base = None
        if not self.tasks:
            raise ValueError("the stream needs at least one task")
        try:
            benchmark.check_tasks(self)
        except UserError as error:
            raise ValueError(str(error)) from None
        names = self.task_names() + self.eval_names()
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"task names must be distinct across tasks and eval_only: {duplicates}")
        return self

    def task_names(self) -> list[str]:
        """The names of ``tasks`` (given as names or as file tasks)."""
        return [t if isinstance(t, str) else t.name for t in self.tasks or []]

    def eval_names(self) -> list[str]:
        """The names of ``eval_only``."""
        return [t if isinstance(t, str) else t.name for t in self.eval_only or []]


class _NamedOptions(BaseModel):
    """A registered name plus its options, stored resolved: every option with its value.

    The options are validated by the named class's ``options_class`` and replaced by its
    full dump, defaults included, so the saved config says exactly what ran and a resume
    after a default changed is detected as a different config.
    """

    model_config = ConfigDict(extra="allow")
    name: str

    @classmethod
    def _registered(cls, name: str):
        """The registered class for ``name`` (raises UserError with "did you mean")."""
        raise NotImplementedError

    @model_validator(mode="before")
    @classmethod
    def _resolve_options(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        default = cls.model_fields["name"].default
        name = data.get("name", None if default is PydanticUndefined else default)
        if not isinstance(name, str):
            return data  # pydantic reports the missing or mistyped name
        try:
            options_class = cls._registered(name).options_class
        except UserError as error:
            raise ValueError(str(error)) from None
        try:
            options = options_class(**{k: v for k, v in data.items() if k != "name"})
        except ValidationError as error:
            raise ValueError(f"{cls.kind} {name!r}: {first_error(error)}") from None
        return {"name": name, **options.model_dump(mode="json")}

    def options(self) -> dict[str, Any]:
        """The options (every field of the options model), without the name."""
        return dict(self.model_extra or {})


class SelectorConfig(_NamedOptions):
    """A data selector's name plus its options (see the selector's docstring)."""

    kind: ClassVar[str] = "selector"
    name: str = Field("random", description="Registered selector (see `mcit ls`).")

    @classmethod
    def _registered(cls, name: str):
        from mcit.selection import SELECTORS

        return SELECTORS.get(name)


class PoolConfig(_Strict):
    selector: SelectorConfig = Field(default_factory=SelectorConfig, description="How each step's training data is chosen from the whole pool.")
    budget: int = Field(500, ge=1, description="Training samples selected from the pool at each step.")
    pool_budget: int | None = Field(None, ge=1, description="Pool size kept after each step by permanent pruning (a pruning selector such as 'lite'); null keeps every sample.")

    @field_validator("selector", mode="before")
    @classmethod
    def _selector_shorthand(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _pruning(self) -> PoolConfig:
        from mcit.selection import SELECTORS

        prunes = SELECTORS.get(self.selector.name).prunes
        if prunes and self.pool_budget is None:
            raise ValueError(f"selector {self.selector.name!r} prunes the pool: set pool.pool_budget")
        if not prunes and self.pool_budget is not None:
            raise ValueError(f"pool.pool_budget needs a pruning selector (lite); {self.selector.name!r} does not prune")
        if self.pool_budget is not None and self.pool_budget < self.budget:
            raise ValueError(f"pool.pool_budget ({self.pool_budget}) is smaller than the training budget ({self.budget})")
        return self


class MethodConfig(_NamedOptions):
    """A method name plus its options (see the method's docstring)."""

    kind: ClassVar[str] = "method"
    name: str = Field(description="Registered method name (see `mcit ls`).")

    @classmethod
    def _registered(cls, name: str):
        from mcit.strategies import STRATEGIES

        return STRATEGIES.get(name)


def method_list(value: Any) -> Any:
    """Expand `method: er` and `method: [er, ewc]` to `[{name: er}, ...]`; dicts pass through."""
    if isinstance(value, (str, dict)):
        value = [value]
    if isinstance(value, list):
        return [{"name": item} if isinstance(item, str) else item for item in value]
    return value


class EvalConfig(_Strict):
    batch_size: int = Field(128, ge=1, description="Prompts per generation batch.")


class RunConfig(_Strict):
    scenario: str = Field("stream", description="What the run iterates (see `mcit ls`): 'stream' trains each task in turn; 'pool': datasets join a pool and each step trains on a budgeted selection of the whole pool.")
    seed: int = Field(0, description="Seed of data order, sampling and buffers (each task derives its own).")
    threads: int = Field(2, ge=1, description="CPU threads for torch.")
    device: str = Field("auto", description="'auto' (cuda if available, else cpu), 'cpu' or 'cuda[:i]'.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Which model and which parts train.")
    benchmark: BenchmarkConfig = Field(default_factory=BenchmarkConfig, description="The task stream.")
    method: list[MethodConfig] = Field(default_factory=lambda: [MethodConfig(name="seqft")], description="Continual-learning methods, chained in order (e.g. [er, ewc]).")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Training settings for each task of the stream.")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="Evaluation settings.")
    pool: PoolConfig | None = Field(None, description="Selection and budgets of the pool scenario (defaults filled in when scenario is 'pool').")
    save_models: bool = Field(
        True, description="Write each task checkpoint's model in its standard form too: the peft adapter when LoRA is on (small), else the whole model with save_pretrained (a full copy per kept checkpoint; turn off for large models and use `mcit export`)."
    )
    keep_checkpoints: int | None = Field(
        1, ge=1, description="Task checkpoints kept in the run directory, newest first (resume needs only the newest); null keeps every one."
    )

    @model_validator(mode="before")
    @classmethod
    def _pool_benchmark(cls, data: Any) -> Any:
        """``scenario: pool`` alone picks the embedded pool benchmark and default pool settings."""
        if isinstance(data, dict) and data.get("scenario") == "pool":
            data = dict(data)
            if isinstance(data.get("benchmark", {}), dict):
                data["benchmark"] = {"name": "lifelong", **data.get("benchmark", {})}
            data.setdefault("pool", {})
        return data

    @field_validator("scenario")
    @classmethod
    def _known_scenario(cls, value: str) -> str:
        from mcit.scenarios import SCENARIOS

        if value not in SCENARIOS:
            raise ValueError(SCENARIOS.unknown_message(value))
        return value

    @model_validator(mode="after")
    def _scenario_matches(self) -> RunConfig:
        from mcit.benchmarks import BENCHMARKS
        from mcit.scenarios import SCENARIOS

        built = BENCHMARKS.get(self.benchmark.name).builds
        if SCENARIOS.get(self.scenario).runs_on != built:
            fitting = [name for name in SCENARIOS if SCENARIOS.get(name).runs_on == built]
            raise ValueError(
                f"benchmark {self.benchmark.name!r} is a {'data pool' if built == 'pool' else 'task stream'}; "
                f"set scenario: {' or '.join(fitting)}"
            )
        if self.scenario != "pool" and self.pool is not None:
            raise ValueError("pool settings need scenario: pool")
        if self.scenario == "pool" and self.pool is None:
            self.pool = PoolConfig()
        return self

    @field_validator("method", mode="before")
    @classmethod
    def _method_shorthand(cls, value: Any) -> Any:
        return method_list(value)

    @field_validator("method")
    @classmethod
    def _compatible(cls, value: list[MethodConfig]) -> list[MethodConfig]:
        from mcit.strategies import STRATEGIES

        if not value:
            raise ValueError("give at least one method (seqft for plain fine-tuning)")
        names = [m.name for m in value]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"method {repeated[0]!r} is listed twice; give each method once, with all its options")
        classes = [STRATEGIES.get(m.name) for m in value]
        if len(names) > 1:
            alone = [n for n, c in zip(names, classes) if not c.composable]
            if alone:
                raise ValueError(f"method {alone[0]!r} cannot be combined with other methods (got {names})")
        options = [strategy_class.options_class(**m.options()) for m, strategy_class in zip(value, classes)]
        provided = {role for strategy_class, o in zip(classes, options) for role in strategy_class.provides(o)}
        for name, strategy_class, o in zip(names, classes, options):
            for role, hint in strategy_class.requires(o).items():
                if role not in provided:
                    raise ValueError(f"method {name!r} needs a {role} method in the chain: {hint}")
        return value


def _source_of(location: tuple, sources: list[tuple[list[str], str]], default: str) -> str:
    """Which input set the value at ``location``: the last override whose key path and the
    error's location share their leading keys, else the file (``default``)."""
    path = [str(part) for part in location]
    if not path and sources:  # a check across fields: any input may have set it
        return f"{default} with {', '.join(label for _, label in sources)}"
    for keys, label in reversed(sources):
        common = min(len(keys), len(path))
        if common and keys[:common] == path[:common]:
            return label
    return default


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=1e-3"`` -> (["train", "lr"], 0.001); the value is parsed as YAML."""
    if "=" not in text:
        raise UserError(f"override {text!r} is not of the form key=value")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise UserError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_override(data: dict, path: list[str], value: Any) -> None:
    node: Any = data
    for depth, part in enumerate(path[:-1]):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
            continue
        if not isinstance(node, dict):
            raise UserError(f"override {'.'.join(path)}: {'.'.join(path[:depth])} is not a mapping")
        node = node.setdefault(part, {})
    if isinstance(node, list) and path[-1].isdigit() and int(path[-1]) < len(node):
        node[int(path[-1])] = value
    elif isinstance(node, dict):
        node[path[-1]] = value
    else:
        raise UserError(f"override {'.'.join(path)}: parent is not a mapping")


def _expand_methods(data: dict[str, Any]) -> None:
    """Rewrite the ``method`` shorthands in place so ``method.0.option=...`` overrides apply."""
    if "method" in data:
        data["method"] = method_list(data["method"])


def _read_yaml(path: Path) -> dict[str, Any]:
    """The mapping a config file holds.

    Raises:
        UserError: Unreadable, not UTF-8, not YAML, empty, or not a mapping.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise UserError(f"cannot read config {path}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: not UTF-8 text (byte {error.start})") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"{path}:{where} is not valid YAML ({getattr(error, 'problem', error)})") from None
    if loaded is None:
        raise UserError(
            f"{path} is empty: give at least one setting, or run without a config file for the default run"
        )
    if not isinstance(loaded, dict):
        raise UserError(f"{path}: the top level must be a mapping of settings")
    return loaded


def _resolve_root(data: dict[str, Any], folder: Path) -> None:
    """Make a file benchmark's ``root`` absolute: relative to ``folder``, which is the default."""
    benchmark = data.get("benchmark")
    if not isinstance(benchmark, dict) or not isinstance(benchmark.get("tasks"), list):
        return
    if not any(isinstance(task, dict) for task in benchmark["tasks"] + list(benchmark.get("eval_only") or [])):
        return
    root = benchmark.get("root")
    if root is None or isinstance(root, str):
        benchmark["root"] = str((folder / (root or ".")).resolve())


def load_config(path: Path | None = None, overrides: list[str] | None = None, method: str | None = None) -> RunConfig:
    """Read a YAML config (or defaults), apply ``--method`` and overrides, validate.

    Args:
        path: The YAML file, or ``None`` for the default run.
        overrides: ``key=value`` strings, applied in order after the file.
        method: ``--method`` of the CLI (comma-separated names), applied before the overrides
            so ``method.0.option=...`` refers to it.

    Raises:
        UserError: On unreadable or empty YAML, unknown keys, bad values; the message names
            the input that set the bad value (the file, ``--method`` or the override) and
            the field.
    """
    data: dict[str, Any] = _read_yaml(path) if path is not None else {}
    default_source = str(path) if path is not None else "config"
    sources: list[tuple[list[str], str]] = []
    steps = ([(f"method=[{method}]", f"--method {method!r}")] if method is not None else []) + [
        (text, f"override {text!r}") for text in overrides or []
    ]
    for text, label in steps:
        keys, value = parse_override(text)
        _expand_methods(data)
        apply_override(data, keys, value)
        sources.append((keys, label))
    _resolve_root(data, Path(path).parent if path is not None else Path.cwd())
    try:
        return RunConfig.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        source = _source_of(tuple(first["loc"]), sources, default_source)
        raise UserError(f"{source}: invalid config: {first_error(error)}") from None
    except UserError as error:  # a name looked up outside a field (e.g. a benchmark's scenario)
        raise UserError(f"{default_source}: {error}") from None


def config_to_dict(config: RunConfig) -> dict[str, Any]:
    """The resolved config as plain data (for the run directory)."""
    return config.model_dump(mode="json")
