"""Images on disk or inside a dataset, decoded only when a batch needs them.

A sample read from a data file holds :class:`ImageRef` objects (a file) or
:class:`StoredImage` objects (encoded bytes inside a Hugging Face dataset) instead of pixels,
so a stream of datasets, a replay buffer or a pool of a million records holds references,
not images. The collator calls :func:`as_pil` on each image of a batch.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from mcit.errors import UserError, one_line

# What PIL raises on unidentifiable, truncated or pathologically large files.
IMAGE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


@dataclass(frozen=True)
class ImageRef:
    """An image file and where it was named (for the error if it cannot be decoded).

    Attributes:
        path: The image file.
        where: The data file, record and field that named it (``"a.json: record 3 (id 'x')"``).
    """

    path: str
    where: str = ""

    def load(self) -> Image.Image:
        """The image, fully decoded and converted to RGB, its file closed.

        Raises:
            UserError: One line naming the data record, the field and the decoder's reason.
        """
        try:
            with Image.open(self.path) as image:
                image.load()
                return image.convert("RGB")
        except IMAGE_ERRORS as error:
            reason = one_line(error, empty=type(error).__name__)
            prefix = f"{self.where}: field 'image': " if self.where else ""
            raise UserError(f"{prefix}cannot decode {self.path}: {reason}") from None


@dataclass(frozen=True)
class StoredImage:
    """An image kept as encoded bytes in a row of a Hugging Face dataset (parquet or ``save_to_disk``).

    The dataset is memory-mapped Arrow, so holding a reference costs no memory; the bytes
    are read and decoded by :meth:`load`.

    Attributes:
        source: The dataset file or folder (for messages).
        row: The dataset row.
        column: The image column.
        position: The image's index in a column that holds a list of images; ``None`` otherwise.
        where: The data file and record that named it (for the error if it cannot be decoded).
        table: The dataset's memory-mapped Arrow table (``Dataset.data``).
    """

    source: str
    row: int
    column: str
    position: int | None = None
    where: str = ""
    table: Any = field(default=None, compare=False, hash=False, repr=False)

    @property
    def name(self) -> str:
        """The image as a message names it: ``data.parquet row 3 column 'image'``."""
        return f"{self.source} row {self.row} column {self.column!r}" + ("" if self.position is None else f"[{self.position}]")

    def read_bytes(self) -> bytes:
        """The encoded image (a ``datasets.Image`` value is a struct of ``bytes`` and ``path``)."""
        value = self.table.column(self.column)[self.row]
        if self.position is not None:
            value = value[self.position]
        return value["bytes"].as_py()

    def load(self) -> Image.Image:
        """The image, fully decoded and converted to RGB.

        Raises:
            UserError: One line naming the data record, the field and the decoder's reason.
        """
        try:
            with Image.open(io.BytesIO(self.read_bytes())) as image:
                image.load()
                return image.convert("RGB")
        except IMAGE_ERRORS as error:
            raise UserError(f"{self._prefix()}cannot decode {self.name}: {one_line(error, empty=type(error).__name__)}") from None

    def size(self) -> tuple[int, int]:
        """(width, height), read from the encoded image's header."""
        try:
            with Image.open(io.BytesIO(self.read_bytes())) as image:
                return image.size
        except IMAGE_ERRORS as error:
            raise UserError(f"{self._prefix()}cannot read {self.name}: {one_line(error, empty=type(error).__name__)}") from None

    def _prefix(self) -> str:
        return f"{self.where}: field 'image': " if self.where else ""


def image_size(image: Image.Image | ImageRef | StoredImage) -> tuple[int, int]:
    """(width, height) of an image, read from the file's (or the stored bytes') header for a reference."""
    if isinstance(image, StoredImage):
        return image.size()
    if not isinstance(image, ImageRef):
        return image.size
    try:
        with Image.open(image.path) as opened:
            return opened.size
    except IMAGE_ERRORS as error:
        prefix = f"{image.where}: field 'image': " if image.where else ""
        raise UserError(f"{prefix}cannot read {image.path}: {one_line(error, empty=type(error).__name__)}") from None


MID_GREY = (128, 128, 128)


def blank_colour(processor: Any) -> tuple[tuple[int, int, int], str]:
    """The RGB colour of a blank image for ``processor``'s model, and where it came from: the
    image processor's ``image_mean`` (what normalises to about zero), or mid-grey where it names none."""
    mean = getattr(getattr(processor, "image_processor", None), "image_mean", None)
    if mean is not None and len(mean) == 3:
        return tuple(round(255 * float(c)) for c in mean), "the processor's image_mean"
    return MID_GREY, "mid-grey (the processor names no image_mean)"


def blank_like(image: Image.Image | ImageRef | StoredImage, colour: tuple[int, int, int]) -> Image.Image:
    """A uniform image of ``image``'s size (read from the header, nothing decoded) in ``colour``.

    The same size keeps the number of image tokens (dynamic-resolution families tile by
    size); a real uniform image, not all-zero pixel values, because some families
    (Idefics3 / SmolVLM) drop all-zero images as padding. Images of one size and colour are
    one shared object: read it, never draw on it.
    """
    return _uniform(image_size(image), tuple(colour))


@functools.lru_cache(maxsize=64)
def _uniform(size: tuple[int, int], colour: tuple[int, int, int]) -> Image.Image:
    """One shared uniform image per (size, colour): callers only read it."""
    return Image.new("RGB", size, colour)


def as_pil(image: Image.Image | ImageRef | StoredImage) -> Image.Image:
    """A decoded image, whether ``image`` is one already or a reference to a file or stored bytes."""
    return image.load() if isinstance(image, (ImageRef, StoredImage)) else image
