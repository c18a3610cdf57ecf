"""Tiny random checkpoints of several VLM families, built offline from transformers' own classes.

Each family's builder writes a checkpoint directory with ``save_pretrained`` (model weights as
safetensors, config, generation config, processor with tokenizer and chat template) and
returns its path, so tests can load it the way any Hugging Face checkpoint is loaded:
``AutoModelForImageTextToText.from_pretrained(path)`` and :func:`load_processor` (which is
``AutoProcessor.from_pretrained(path)`` plus the torchvision workaround described below).

Like :mod:`mcit.models.tiny`, everything is local: the tokenizer is a byte-level BPE trained
with ``tokenizers`` on a small corpus (callers may add their own text), the family's special
tokens are added as special tokens, image processors are the PIL ("slow") ones, and the chat
templates are short re-writings of each family's real conversation format.

torchvision: the processors of Qwen2-VL, Qwen2.5-VL, Qwen3-VL, LLaVA-OneVision and InternVL
are built with :func:`mcit.models.processors.without_video_processor` when torchvision is
missing (see that module), and loaded back with its :func:`load_processor`. The builders still write the family's video processor config into
``processor_config.json``, as Hub checkpoints carry one, so with torchvision installed plain
``AutoProcessor`` loads these checkpoints too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    CLIPVisionConfig,
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    Idefics3Processor,
    Idefics3VisionConfig,
    InternVLConfig,
    InternVLForConditionalGeneration,
    InternVLProcessor,
    InternVLVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    LlavaOnevisionProcessor,
    LlavaProcessor,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    ProcessorMixin,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2Config,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLProcessor,
    SiglipVisionConfig,
)
from transformers.models.clip import CLIPImageProcessorPil
from transformers.models.got_ocr2 import GotOcr2ImageProcessorPil
from transformers.models.idefics3 import Idefics3ImageProcessorPil
from transformers.models.llava_onevision import LlavaOnevisionImageProcessorPil
from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil

from mcit.models.processors import without_video_processor

try:  # Qwen3-VL arrived in transformers 4.57; keep the module importable without it.
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLProcessor
except ImportError:  # pragma: no cover - depends on the installed transformers
    Qwen3VLConfig = Qwen3VLForConditionalGeneration = Qwen3VLProcessor = None

# Words every tokenizer is trained on; builders add the caller's corpus and the template markers.
BASE_CORPUS = (
    "What is shown in this image? Describe the picture in one word.",
    "The image shows a red square on a blue background.",
    "How many objects are there? There are three objects.",
    "What color is the circle? The circle is green.",
    "Answer with a single word. yes no maybe left right up down",
    "You are a helpful assistant. Thank you, that is correct.",
    "zero one two three four five six seven eight nine ten 0 1 2 3 4 5 6 7 8 9",
)

VOCAB_SIZE = 400
SEED = 0


# --------------------------------------------------------------------------------------------
# tokenizer and chat templates


def train_tokenizer(
    corpus: Iterable[str],
    special_tokens: Sequence[str],
    *,
    eos: str,
    pad: str,
    bos: str | None = None,
    unk: str | None = None,
    add_bos: bool = False,
    extra_special_tokens: dict[str, str] | None = None,
    chat_template: str | None = None,
    vocab_size: int = VOCAB_SIZE,
) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on ``corpus`` with ``special_tokens`` as single special ids.

    ``add_bos`` makes the tokenizer prepend ``bos`` (as Llama/LLaVA tokenizers do); ChatML
    families put their markers in the template instead. ``extra_special_tokens`` become
    attributes (``tokenizer.image_token``, ``tokenizer.image_token_id`` ...) that processors read.
    """
    backend = Tokenizer(models.BPE(unk_token=unk))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(list(corpus), trainer=trainer)
    if add_bos:
        assert bos is not None
        backend.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, backend.token_to_id(bos))]
        )
    else:
        backend.post_processor = processors.ByteLevel(trim_offsets=False)
    kwargs = {"bos_token": bos, "unk_token": unk}
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=eos,
        pad_token=pad,
        extra_special_tokens=extra_special_tokens or {},
        model_max_length=2048,
        chat_template=chat_template,
        **{k: v for k, v in kwargs.items() if v is not None},
    )


def chat_template(
    *,
    user: tuple[str, str],
    assistant: tuple[str, str],
    system: tuple[str, str],
    image: str,
    generation_prompt: str,
    begin: str = "",
    default_system: str | None = None,
) -> str:
    """A Jinja chat template from each role's (opening, closing) strings.

    Message content may be a string or a list of ``{"type": "image"}`` / ``{"type": "text",
    "text": ...}`` parts, rendered in order (an image part becomes ``image``). Openings are
    Jinja snippets (they may look at ``message``); closings are literal text. The assistant's
    closing must start with the family's end-of-turn token.
    """

    def role(name: str, opening: str, closing: str) -> str:
        return (
            f"{{% elif message['role'] == '{name}' %}}{opening}"
            "{% if message['content'] is string %}{{ message['content'] }}"
            "{% else %}{% for part in message['content'] %}"
            f"{{% if part['type'] == 'image' %}}{{{{ {image!r} }}}}"
            "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
            "{% endfor %}{% endif %}"
            f"{{{{ {closing!r} }}}}"
        )

    default = ""
    if default_system is not None:
        default = (
            "{% if messages[0]['role'] != 'system' %}"
            f"{{{{ {(system[0] + default_system + system[1])!r} }}}}"
            "{% endif %}"
        )
    return (
        f"{{{{ {begin!r} }}}}{default}"
        "{% for message in messages %}{% if false %}"
        + role("system", *system)
        + role("user", *user)
        + role("assistant", *assistant)
        + "{% endif %}{% endfor %}"
        f"{{% if add_generation_prompt %}}{{{{ {generation_prompt!r} }}}}{{% endif %}}"
    )


def _chatml(image: str, default_system: str | None = None) -> str:
    return chat_template(
        system=("<|im_start|>system\n", "<|im_end|>\n"),
        user=("<|im_start|>user\n", "<|im_end|>\n"),
        assistant=("<|im_start|>assistant\n", "<|im_end|>\n"),
        image=image,
        generation_prompt="<|im_start|>assistant\n",
        default_system=default_system,
    )


# LLaVA-1.5 (llava-hf): "USER: <image>\nQuestion ASSISTANT: Answer</s>USER: ... ASSISTANT:"; the
# tokenizer prepends <s>.
LLAVA_TEMPLATE = chat_template(
    system=("", " "),
    user=("USER: ", " "),
    assistant=("ASSISTANT: ", "</s>"),
    image="<image>\n",
    generation_prompt="ASSISTANT:",
)
# LLaVA-OneVision (llava-hf, Qwen2 LM): ChatML, "<image>\n" before the question.
LLAVA_ONEVISION_TEMPLATE = _chatml("<image>\n")
# Qwen2-VL / Qwen2.5-VL: ChatML with a default system prompt; one vision span per image.
QWEN2_VL_TEMPLATE = _chatml("<|vision_start|><|image_pad|><|vision_end|>", "You are a helpful assistant.")
# Qwen3-VL: same markers, no default system prompt.
QWEN3_VL_TEMPLATE = _chatml("<|vision_start|><|image_pad|><|vision_end|>")
# InternVL (transformers' InternVL, Qwen2 LM): ChatML, "<IMG_CONTEXT>\n" per image (the processor
# expands it to <img><IMG_CONTEXT>*N</img>).
INTERNVL_TEMPLATE = _chatml("<IMG_CONTEXT>\n")
# Idefics3 / SmolVLM: "<|im_start|>User:<image>Question<end_of_utterance>\nAssistant: Answer
# <end_of_utterance>\n"; the role is followed by ':' when the content starts with an image, else ': '.
_SMOL_COLON = (
    "{% if message['content'] is not string and message['content'][0]['type'] == 'image' %}:{% else %}: {% endif %}"
)
IDEFICS3_TEMPLATE = chat_template(
    begin="<|im_start|>",
    system=("System" + _SMOL_COLON, "<end_of_utterance>\n"),
    user=("User" + _SMOL_COLON, "<end_of_utterance>\n"),
    assistant=("Assistant" + _SMOL_COLON, "<end_of_utterance>\n"),
    image="<image>",
    generation_prompt="Assistant:",
)

CHATML_WORDS = ("<|im_start|>user\n", "<|im_start|>assistant\n", "<|im_start|>system\n", "<|im_end|>\n")


# --------------------------------------------------------------------------------------------
# families


@dataclass(frozen=True)
class Family:
    """One VLM family: how to build its tiny checkpoint and what callers need to know about it.

    Calling the family builds the checkpoint: ``FAMILIES["qwen2_vl"](tmp_path)`` -> directory.
    """

    name: str
    model_class: type[PreTrainedModel]
    processor_class: type[ProcessorMixin]
    build_fn: Callable[[Path, Sequence[str]], Path] = field(repr=False)
    image_size: int  # square test images of this side give the family's fixed number of image tokens
    image_token: str  # processor.image_token
    end_of_turn: str  # closes every assistant turn; in generation_config.eos_token_id
    # True: pass processor(images=...) one list per sample (Idefics3's native layout; for OneVision
    # a flat list makes every image its own single-image sample, so a two-image sample gets anyres
    # tiles instead of OneVision's multi-image treatment). False: a flat list in text order. Every
    # family accepts the nested layout, with [] for a text-only sample.
    nested_images: bool
    prefixes: dict[str, tuple[str, ...]]  # vision / projector / language_model / lm_head: parameter-name prefixes
    zero_image_is_padding: bool = False  # an all-zero pixel_values image is dropped by the model

    def __call__(self, path: Path, corpus: Iterable[str] | None = None) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        return self.build_fn(path, [*BASE_CORPUS, *(corpus or ())])


def _save(
    path: Path,
    model: PreTrainedModel,
    processor: ProcessorMixin,
    tokenizer,
    end_of_turn: str,
    video_processor: dict | None = None,
) -> Path:
    """Save model and processor; ``generation_config.eos_token_id`` = [end of turn, tokenizer eos].

    ``video_processor`` is the config of the family's (torchvision-only) video processor, written
    into ``processor_config.json`` the way transformers 5 nests sub-processor configs: Hub
    checkpoints of these families ship one, so loaders meet it, and with torchvision installed
    ``AutoProcessor`` needs it.
    """
    eos = [tokenizer.convert_tokens_to_ids(end_of_turn)]
    if tokenizer.eos_token_id not in eos:
        eos.append(tokenizer.eos_token_id)
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.eval()
    model.save_pretrained(path)
    processor.save_pretrained(path)
    if video_processor is not None:
        config_file = path / "processor_config.json"
        config = json.loads(config_file.read_text())
        config["video_processor"] = video_processor
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return path


# The vision encoders' sizes (CLIP, SigLIP, InternVL's and Idefics3's own).
VISION_SIZES = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}


def _text_kwargs(tokenizer, **extra) -> dict:
    return {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": len(tokenizer),
        "max_position_embeddings": 512,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        **extra,
    }


def _build_llava(path: Path, corpus: Sequence[str]) -> Path:
    size, patch = 32, 16  # 2x2 patches (+ CLS, dropped by the "default" strategy): 4 image tokens
    tokenizer = train_tokenizer(
        [*corpus, "USER: ASSISTANT:"],
        ["<unk>", "<s>", "</s>", "<pad>", "<image>"],
        bos="<s>",
        eos="</s>",
        pad="<pad>",
        unk="<unk>",
        add_bos=True,
        extra_special_tokens={"image_token": "<image>"},
        chat_template=LLAVA_TEMPLATE,
    )
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAVA_TEMPLATE,
    )
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            **VISION_SIZES, image_size=size, patch_size=patch,
        ),
        text_config=LlamaConfig(**_text_kwargs(tokenizer)),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    torch.manual_seed(SEED)
    return _save(path, LlavaForConditionalGeneration(config), processor, tokenizer, "</s>")


def _qwen_tokenizer(corpus: Sequence[str], template: str, extra: Sequence[str] = (), **extra_special):
    return train_tokenizer(
        [*corpus, *CHATML_WORDS],
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *extra],
        eos="<|im_end|>",
        pad="<|endoftext|>",
        extra_special_tokens=extra_special,
        chat_template=template,
    )


def _build_llava_onevision(path: Path, corpus: Sequence[str]) -> Path:
    size, patch = 32, 16
    tokenizer = _qwen_tokenizer(
        corpus, LLAVA_ONEVISION_TEMPLATE, ["<image>", "<video>"], image_token="<image>", video_token="<video>"
    )
    pinpoints = [[size, size]]  # anyres with one grid: the base image plus one tile
    image_processor = LlavaOnevisionImageProcessorPil(
        size={"height": size, "width": size}, image_grid_pinpoints=pinpoints
    )
    processor = without_video_processor(LlavaOnevisionProcessor)(
        image_processor=image_processor,
        tokenizer=tokenizer,
        num_image_tokens=(size // patch) ** 2,
        vision_feature_select_strategy="full",
        vision_aspect_ratio="anyres_max_9",
        chat_template=LLAVA_ONEVISION_TEMPLATE,
    )
    config = LlavaOnevisionConfig(
        vision_config=SiglipVisionConfig(
            **VISION_SIZES, image_size=size, patch_size=patch,
            vision_use_head=False,  # as in llava-hf's OneVision configs
        ),
        text_config=Qwen2Config(**_text_kwargs(tokenizer)),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        image_grid_pinpoints=pinpoints,
        vision_aspect_ratio="anyres_max_9",
    )
    torch.manual_seed(SEED)
    video = {"video_processor_type": "LlavaOnevisionVideoProcessor", "size": {"height": size, "width": size}}
    return _save(path, LlavaOnevisionForConditionalGeneration(config), processor, tokenizer, "<|im_end|>", video)


QWEN_VISION_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
QWEN_EXTRA = {
    "image_token": "<|image_pad|>",
    "video_token": "<|video_pad|>",
    "vision_start_token": "<|vision_start|>",
    "vision_end_token": "<|vision_end|>",
}


def _qwen_ids(tokenizer) -> dict[str, int]:
    ids = tokenizer.convert_tokens_to_ids
    return {
        "image_token_id": ids("<|image_pad|>"),
        "video_token_id": ids("<|video_pad|>"),
        "vision_start_token_id": ids("<|vision_start|>"),
        "vision_end_token_id": ids("<|vision_end|>"),
    }


def _qwen_image_processor(side: int, patch: int) -> Qwen2VLImageProcessorPil:
    # Every image is resized to side x side: (side/patch)^2 patches, merged 2x2 into image tokens.
    return Qwen2VLImageProcessorPil(
        size={"shortest_edge": side * side, "longest_edge": side * side},
        patch_size=patch,
        temporal_patch_size=2,
        merge_size=2,
    )


def _qwen_video(side: int, patch: int, type_: str = "Qwen2VLVideoProcessor") -> dict:
    return {
        "video_processor_type": type_,
        "size": {"shortest_edge": side * side, "longest_edge": 2 * side * side},
        "patch_size": patch,
        "temporal_patch_size": 2,
        "merge_size": 2,
    }


def _build_qwen2_vl(path: Path, corpus: Sequence[str]) -> Path:
    tokenizer = _qwen_tokenizer(corpus, QWEN2_VL_TEMPLATE, QWEN_VISION_TOKENS, **QWEN_EXTRA)
    processor = without_video_processor(Qwen2VLProcessor)(
        image_processor=_qwen_image_processor(56, 14), tokenizer=tokenizer, chat_template=QWEN2_VL_TEMPLATE
    )
    config = Qwen2VLConfig(
        vision_config={
            "depth": 2,
            "embed_dim": 32,
            "hidden_size": 64,
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        text_config=_text_kwargs(
            tokenizer, rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}
        ),
        **_qwen_ids(tokenizer),
    )
    torch.manual_seed(SEED)
    return _save(path, Qwen2VLForConditionalGeneration(config), processor, tokenizer, "<|im_end|>", _qwen_video(56, 14))


def _build_qwen2_5_vl(path: Path, corpus: Sequence[str]) -> Path:
    tokenizer = _qwen_tokenizer(corpus, QWEN2_VL_TEMPLATE, QWEN_VISION_TOKENS, **QWEN_EXTRA)
    processor = without_video_processor(Qwen2_5_VLProcessor)(
        image_processor=_qwen_image_processor(56, 14), tokenizer=tokenizer, chat_template=QWEN2_VL_TEMPLATE
    )
    config = Qwen2_5_VLConfig(
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 56,
            "fullatt_block_indexes": [1],
        },
        text_config=_text_kwargs(
            tokenizer, rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}
        ),
        **_qwen_ids(tokenizer),
    )
    torch.manual_seed(SEED)
    video = _qwen_video(56, 14)
    return _save(path, Qwen2_5_VLForConditionalGeneration(config), processor, tokenizer, "<|im_end|>", video)


def _build_qwen3_vl(path: Path, corpus: Sequence[str]) -> Path:
    tokenizer = _qwen_tokenizer(corpus, QWEN3_VL_TEMPLATE, QWEN_VISION_TOKENS, **QWEN_EXTRA)
    processor = without_video_processor(Qwen3VLProcessor)(
        image_processor=_qwen_image_processor(64, 16), tokenizer=tokenizer, chat_template=QWEN3_VL_TEMPLATE
    )
    config = Qwen3VLConfig(
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "num_position_embeddings": 16,
            "deepstack_visual_indexes": [0],
        },
        text_config=_text_kwargs(
            tokenizer,
            head_dim=16,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [4, 2, 2],
                "mrope_interleaved": True,
            },
        ),
        **_qwen_ids(tokenizer),
    )
    torch.manual_seed(SEED)
    video = _qwen_video(64, 16, "Qwen3VLVideoProcessor")
    return _save(path, Qwen3VLForConditionalGeneration(config), processor, tokenizer, "<|im_end|>", video)


def _build_internvl(path: Path, corpus: Sequence[str]) -> Path:
    size, patch = 56, 14  # 4x4 patches, pixel-shuffled by 0.5: 4 image tokens
    extra = {
        "start_image_token": "<img>",
        "end_image_token": "</img>",
        "context_image_token": "<IMG_CONTEXT>",
        "video_token": "<video>",
    }
    tokenizer = _qwen_tokenizer(corpus, INTERNVL_TEMPLATE, list(extra.values()), **extra)
    image_processor = GotOcr2ImageProcessorPil(size={"height": size, "width": size}, crop_to_patches=False)
    processor = without_video_processor(InternVLProcessor)(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_length=(size // patch) ** 2 // 4,
        chat_template=INTERNVL_TEMPLATE,
    )
    config = InternVLConfig(
        vision_config=InternVLVisionConfig(
            **VISION_SIZES, image_size=(size, size), patch_size=(patch, patch),
        ),
        text_config=Qwen2Config(**_text_kwargs(tokenizer)),
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"),
        image_seq_length=(size // patch) ** 2 // 4,
        downsample_ratio=0.5,
        tie_word_embeddings=False,  # InternVL's default ties lm_head to the embeddings (then no lm_head.* parameter)
    )
    torch.manual_seed(SEED)
    video = {"video_processor_type": "InternVLVideoProcessor", "size": {"height": size, "width": size}}
    return _save(path, InternVLForConditionalGeneration(config), processor, tokenizer, "<|im_end|>", video)


def _build_idefics3(path: Path, corpus: Sequence[str]) -> Path:
    size, patch, scale = 64, 16, 2  # 4x4 patches, pixel-shuffled by 2: 4 image tokens per image
    special = [
        "<|endoftext|>",
        "<|im_start|>",
        "<|im_end|>",
        "<fake_token_around_image>",
        "<image>",
        "<end_of_utterance>",
        "<global-img>",
        *(f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6)),
    ]
    tokenizer = train_tokenizer(
        [*corpus, "User: Assistant: System:"],
        special,
        bos="<|im_start|>",
        eos="<end_of_utterance>",
        pad="<|endoftext|>",
        unk="<|endoftext|>",
        extra_special_tokens={"image_token": "<image>", "end_of_utterance_token": "<end_of_utterance>"},
        chat_template=IDEFICS3_TEMPLATE,
    )
    image_processor = Idefics3ImageProcessorPil(
        do_image_splitting=False,
        size={"longest_edge": size},
        max_image_size={"longest_edge": size},
    )
    processor = Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=(size // patch) ** 2 // scale**2,
        chat_template=IDEFICS3_TEMPLATE,
    )
    config = Idefics3Config(
        vision_config=Idefics3VisionConfig(
            **VISION_SIZES, image_size=size, patch_size=patch,
        ),
        text_config=LlamaConfig(**_text_kwargs(tokenizer)),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        scale_factor=scale,
    )
    torch.manual_seed(SEED)
    return _save(path, Idefics3ForConditionalGeneration(config), processor, tokenizer, "<end_of_utterance>")


def _prefixes(vision, projector, language_model, lm_head=("lm_head.",)) -> dict[str, tuple[str, ...]]:
    return {"vision": vision, "projector": projector, "language_model": language_model, "lm_head": lm_head}


_LLAVA_PREFIXES = _prefixes(("model.vision_tower.",), ("model.multi_modal_projector.",), ("model.language_model.",))
_QWEN_PREFIXES = _prefixes(
    ("model.visual.patch_embed.", "model.visual.blocks."), ("model.visual.merger.",), ("model.language_model.",)
)

FAMILIES: dict[str, Family] = {
    "llava": Family(
        "llava",
        LlavaForConditionalGeneration,
        LlavaProcessor,
        _build_llava,
        image_size=32,
        image_token="<image>",
        end_of_turn="</s>",
        nested_images=False,
        prefixes=_LLAVA_PREFIXES,
    ),
    "llava_onevision": Family(
        "llava_onevision",
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionProcessor,
        _build_llava_onevision,
        image_size=32,
        image_token="<image>",
        end_of_turn="<|im_end|>",
        nested_images=True,
        prefixes=_prefixes(
            ("model.vision_tower.",),
            ("model.multi_modal_projector.", "model.image_newline"),  # image_newline: one learned vector
            ("model.language_model.",),
        ),
    ),
    "qwen2_vl": Family(
        "qwen2_vl",
        Qwen2VLForConditionalGeneration,
        Qwen2VLProcessor,
        _build_qwen2_vl,
        image_size=56,
        image_token="<|image_pad|>",
        end_of_turn="<|im_end|>",
        nested_images=False,
        prefixes=_QWEN_PREFIXES,
    ),
    "qwen2_5_vl": Family(
        "qwen2_5_vl",
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        _build_qwen2_5_vl,
        image_size=56,
        image_token="<|image_pad|>",
        end_of_turn="<|im_end|>",
        nested_images=False,
        prefixes=_QWEN_PREFIXES,
    ),
    "internvl": Family(
        "internvl",
        InternVLForConditionalGeneration,
        InternVLProcessor,
        _build_internvl,
        image_size=56,
        image_token="<IMG_CONTEXT>",
        end_of_turn="<|im_end|>",
        nested_images=False,
        prefixes=_LLAVA_PREFIXES,
    ),
    "idefics3": Family(
        "idefics3",
        Idefics3ForConditionalGeneration,
        Idefics3Processor,
        _build_idefics3,
        image_size=64,
        image_token="<image>",
        end_of_turn="<end_of_utterance>",
        nested_images=True,
        prefixes=_prefixes(("model.vision_model.",), ("model.connector.",), ("model.text_model.",)),
        zero_image_is_padding=True,
    ),
}
if Qwen3VLForConditionalGeneration is not None:
    FAMILIES["qwen3_vl"] = Family(
        "qwen3_vl",
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
        _build_qwen3_vl,
        image_size=64,
        image_token="<|image_pad|>",
        end_of_turn="<|im_end|>",
        nested_images=False,
        prefixes=_prefixes(
            ("model.visual.patch_embed.", "model.visual.pos_embed.", "model.visual.blocks."),
            ("model.visual.merger.", "model.visual.deepstack_merger_list."),
            ("model.language_model.",),
        ),
    )
