"""The run config: model, methods, pool settings, evaluation and the run as a whole.

Every model forbids unknown keys and describes every field, so ``mcit validate`` can reject a
typo before any compute is spent and the resolved config written into each run directory
says exactly what ran.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticUndefined

from mcit.config.base import _Strict
from mcit.config.benchmark import BenchmarkConfig, StreamInfo
from mcit.config.language_harness import LanguageHarnessConfig
from mcit.errors import UserError, first_error
from mcit.training.settings import STREAM_DEFAULTS, StreamSettings, TrainConfig


class LoraConfig(_Strict):
    r: int = Field(8, ge=1, description="LoRA rank.")
    alpha: float = Field(16.0, gt=0, description="LoRA scaling numerator (scale = alpha / r, or alpha / sqrt(r) with rslora).")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA input.")
    rslora: bool = Field(False, description="Rank-stabilised LoRA scaling.")
    target_modules: list[str] | None = Field(
        None,
        description="Linear layers of the language model that get adapters, by name or name suffix (e.g. [q_proj, v_proj]); null: every linear layer of the language model except the output head.",
    )


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
    seen_tasks_only: bool = Field(
        False,
        description="After each task evaluate only the tasks trained so far (and the eval-only ones): the lower triangle MCITlib, CoIN and HiDe report, about half the evaluation of a long stream. Skipped cells are null in results.json; FWT needs them and is reported unavailable. Stream scenario only.",
    )


class RunConfig(_Strict):
    stream: StreamInfo | None = Field(None, description="Provenance of a published stream (see `mcit ls benchmarks`); informational.")
    scenario: str = Field("stream", description="What the run iterates (see `mcit ls`): 'stream' trains each task in turn; 'pool': datasets join a pool and each step trains on a budgeted selection of the whole pool.")
    seed: int = Field(0, description="Seed of data order, sampling and buffers (each task derives its own).")
    threads: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto",
        description="CPU threads for torch. 'auto': half the CPUs this process may use, shared among the processes "
        "launched on this machine (LOCAL_WORLD_SIZE), at least 1; 1 on 2 CPUs, so two runs side by side do not "
        "spin against each other (docs/RESULTS.md, 'Two runs on one machine').",
    )
    device: str = Field("auto", description="'auto' (cuda if available, else cpu), 'cpu' or 'cuda[:i]'.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Which model and which parts train.")
    benchmark: BenchmarkConfig = Field(default_factory=BenchmarkConfig, description="The task stream.")
    method: list[MethodConfig] = Field(default_factory=lambda: [MethodConfig(name="seqft")], description="Continual-learning methods, chained (e.g. [er, ewc]); each hook runs by what it does, not by list position, so the order listed does not change the run.")
    train: StreamSettings = Field(default_factory=lambda: TrainConfig(**STREAM_DEFAULTS), description="Training settings for each task of the stream (lr 5e-4 and warmup_ratio 0.2 by default, see docs/RESULTS.md); settings not given keep these defaults.")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="Evaluation settings.")
    language_harness: LanguageHarnessConfig | None = Field(
        None, description="lm-evaluation-harness text tasks scored on the live language model after chosen stream tasks (extra `mcit[lm-eval]`, docs/language-harness.md); null for none."
    )
    pool: PoolConfig | None = Field(None, description="Selection and budgets of the pool scenario (defaults filled in when scenario is 'pool').")
    trackers: list[Literal["tensorboard", "wandb"]] = Field(
        default_factory=list,
        description="Live logging through accelerate's trackers as the run goes (TensorBoard to RUN/logs, Weights & Biases); extras mcit[tensorboard] / mcit[wandb]; the run directory stays the record.",
    )
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
        if self.scenario == "pool" and self.eval.seen_tasks_only:
            raise ValueError("eval.seen_tasks_only is for the stream scenario: a pool run scores every skill after each step")
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
        owners: dict[str, str] = {}
        for name, strategy_class, o in zip(names, classes, options):
            for role in strategy_class.owns(o):
                if role in owners:
                    raise ValueError(f"methods {owners[role]!r} and {name!r} both manage the {role}; keep one of them")
                owners[role] = name
        return value

    @model_validator(mode="after")
    def _adapter(self) -> RunConfig:
        """A method on the peft adapter gets ``model.lora``'s defaults when none is set; one that brings its own refuses it."""
        from mcit.strategies import STRATEGIES

        wants = {method.name: STRATEGIES.get(method.name).peft_lora for method in self.method}
        required = [name for name, want in wants.items() if want == "required"]
        refused = [name for name, want in wants.items() if want == "refused"]
        if required and refused:  # the same refusal whatever the chain's order
            raise ValueError(f"method {required[0]!r} trains the adapter of model.lora, which method {refused[0]!r} refuses; keep one of them")
        if refused and self.model.lora is not None:
            raise ValueError(
                f"method {refused[0]!r} brings its own adapters: set model.lora: null and give their shape as options of {refused[0]!r}"
            )
        if required and self.model.lora is None:
            self.model.lora = LoraConfig()
        return self
