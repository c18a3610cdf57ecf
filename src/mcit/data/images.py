"""Images on disk, decoded only when a batch needs them.

A sample read from a data file holds :class:`ImageRef` objects instead of pixels, so a stream
of datasets, a replay buffer or a pool of a million records holds paths, not images. The
collator calls :func:`as_pil` on each image of a batch.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def image_size(image: Image.Image | ImageRef) -> tuple[int, int]:
    """(width, height) of an image, read from the file's header for a reference."""
    if not isinstance(image, ImageRef):
        return image.size
    try:
        with Image.open(image.path) as opened:
            return opened.size
    except IMAGE_ERRORS as error:
        prefix = f"{image.where}: field 'image': " if image.where else ""
        raise UserError(f"{prefix}cannot read {image.path}: {one_line(error, empty=type(error).__name__)}") from None


def as_pil(image: Image.Image | ImageRef) -> Image.Image:
    """A decoded image, whether ``image`` is one already or a reference to a file."""
    return image.load() if isinstance(image, ImageRef) else image
