"""Load a checkpoint's processor, also where transformers would need torchvision for it.

In transformers 5.x the processors of Qwen2-VL, Qwen2.5-VL, Qwen3-VL, LLaVA-OneVision and
InternVL take a ``video_processor`` whose only implementation needs torchvision. Without
torchvision those classes can neither be constructed (even with ``video_processor=None``:
``__init__`` type-checks it) nor loaded by ``AutoProcessor`` (it loads the video processor
with ``AutoVideoProcessor``). mcit trains on images and text, never video, so when
torchvision is missing it loads such a processor through :func:`without_video_processor`:
the same class, same name, minus the video sub-processor; images, text and the chat template
go through the real class's code, and what it saves names the real class. With torchvision
installed, :func:`load_processor` is plain ``AutoProcessor.from_pretrained``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from transformers import AutoConfig, AutoProcessor, ProcessorMixin
from transformers.models.auto.processing_auto import PROCESSOR_MAPPING, processor_class_from_name
from transformers.utils import is_torchvision_available

logger = logging.getLogger(__name__)


def without_video_processor(processor_class: type[ProcessorMixin]) -> type[ProcessorMixin]:
    """``processor_class`` with ``video_processor`` removed from its sub-processors.

    ``ProcessorMixin`` reads the sub-processors through ``get_attributes``; the subclass drops
    ``video_processor`` there, and drops a saved ``video_processor`` config in
    ``from_args_and_dict``. It keeps the class name and module, so it saves what the real
    class saves. A class without a video processor is returned as it is.
    """
    if "video_processor" not in processor_class.get_attributes():
        return processor_class

    def get_attributes(cls) -> list[str]:
        return [name for name in super(subclass, cls).get_attributes() if name != "video_processor"]

    def from_args_and_dict(cls, args, processor_dict, **kwargs):
        processor_dict = {key: value for key, value in processor_dict.items() if key != "video_processor"}
        return super(subclass, cls).from_args_and_dict(args, processor_dict, **kwargs)

    subclass = type(
        processor_class.__name__,
        (processor_class,),
        {
            "get_attributes": classmethod(get_attributes),
            "from_args_and_dict": classmethod(from_args_and_dict),
            "__module__": processor_class.__module__,
            "__qualname__": processor_class.__qualname__,
        },
    )
    return subclass


def processor_class_of(path: Path) -> type[ProcessorMixin]:
    """The processor class of a checkpoint directory, resolved the way ``AutoProcessor`` does:
    ``processor_config.json``'s ``processor_class``, else the class registered for the model type."""
    config_file = Path(path) / "processor_config.json"
    name = json.loads(config_file.read_text()).get("processor_class") if config_file.is_file() else None
    if name:
        return processor_class_from_name(name)
    return PROCESSOR_MAPPING[type(AutoConfig.from_pretrained(path))]


def needs_video_workaround(path: Path) -> bool:
    """Whether ``AutoProcessor`` cannot load ``path`` here: a video sub-processor and no torchvision."""
    return not is_torchvision_available() and "video_processor" in processor_class_of(path).get_attributes()


def load_processor(path: Path) -> ProcessorMixin:
    """``AutoProcessor.from_pretrained(path)``, or the video-less class when torchvision is missing."""
    if needs_video_workaround(path):
        processor_class = processor_class_of(path)
        logger.info("torchvision is not installed: loading %s without its video processor", processor_class.__name__)
        return without_video_processor(processor_class).from_pretrained(path)
    return AutoProcessor.from_pretrained(path)
