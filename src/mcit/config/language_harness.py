"""The language-harness block: which lm-evaluation-harness tasks score the language model, and when.

The runner owns the wiring; this module only validates the options and answers "does the
harness run after this stream task?" (:meth:`LanguageHarnessConfig.runs_after`).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Literal

from pydantic import Field, field_validator

from mcit.config.base import _Strict
from mcit.errors import UserError


class LanguageHarnessConfig(_Strict):
    """Text-only benchmarks (lm-evaluation-harness) run on the live language model during a stream."""

    tasks: list[str] = Field(
        min_length=1,
        description="lm-evaluation-harness task, group or tag names, e.g. [wsc273, arc_easy, arc_challenge, winogrande, lambada_openai]; names defined in `include_path` count too.",
    )
    after: Literal["last", "all"] | list[str] = Field(
        "last",
        description="Stream tasks after whose training the harness runs: 'last' (only after the final task), 'all' (after every task) or a list of stream task names.",
    )
    limit: int | None = Field(
        None,
        ge=1,
        description="Documents scored per harness task (the first N of its evaluation split); null scores them all. A limited score estimates the full one and is not comparable to published numbers.",
    )
    include_path: str | None = Field(
        None,
        description="A directory of extra lm-evaluation-harness task YAMLs (e.g. ones with `dataset_path: json` reading local files), searched before the built-in tasks; null for built-in tasks only.",
    )
    batch_size: int = Field(8, ge=1, description="Requests per forward pass of the language model.")

    @field_validator("tasks")
    @classmethod
    def _distinct_tasks(cls, tasks: list[str]) -> list[str]:
        if any(not name.strip() for name in tasks):
            raise ValueError("task names must not be empty")
        repeated = sorted({name for name in tasks if tasks.count(name) > 1})
        if repeated:
            raise ValueError(f"tasks named more than once: {', '.join(repeated)}")
        return tasks

    def check_after(self, stream_tasks: Sequence[str]) -> None:
        """Check that every name in ``after`` is a task of the stream.

        Args:
            stream_tasks: The stream's task names, in training order.

        Raises:
            UserError: Naming the first unknown task, with the closest stream task if any.
        """
        if isinstance(self.after, str):
            return
        for name in self.after:
            if name not in stream_tasks:
                close = difflib.get_close_matches(name, list(stream_tasks), n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise UserError(
                    f"language_harness.after: {name!r} is not a task of the stream "
                    f"({', '.join(stream_tasks) or 'none'}).{hint}"
                )

    def runs_after(self, task: str, stream_tasks: Sequence[str]) -> bool:
        """Whether the harness runs once ``task`` (a stream task) has been trained.

        Args:
            task: The stream task just trained.
            stream_tasks: The stream's task names, in training order.

        Returns:
            True for the last stream task under ``'last'``, every task under ``'all'``,
            and the named tasks under a list.
        """
        if self.after == "all":
            return True
        if self.after == "last":
            return bool(stream_tasks) and task == stream_tasks[-1]
        return task in self.after
