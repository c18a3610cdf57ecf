"""Hugging Face datasets as data files: a parquet file or a ``save_to_disk`` folder.

The lmms-lab evaluation sets ship this way: columns ``question_id``, ``question``, ``answer``
or ``answers``, and ``image`` holding the encoded image bytes. Each row becomes a record of
its plain columns; an image column (``datasets.Image``, or a list of them) becomes the
record's ``image`` as :class:`~mcit.data.images.StoredImage` references, decoded only when a
batch needs them. An image stored as a path instead of bytes stays a path (resolved like a
JSON file's). Arrow and parquet are read by the ``datasets`` library; nothing is unpickled.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mcit.data.images import StoredImage
from mcit.errors import UserError, one_line


def read_dataset(path: Path) -> tuple[list[dict[str, Any]], list[Path]]:
    """The rows of the dataset at ``path`` as records, and the files it was read from.

    Raises:
        UserError: When the dataset cannot be read, or a folder holds several splits.
    """
    try:
        import datasets
    except ImportError:
        raise UserError(f"{path}: reading Hugging Face datasets needs the datasets library (pip install 'datasets>=2.14')") from None
    what = "a Hugging Face dataset folder" if path.is_dir() else "a parquet file"
    with _quiet(datasets):
        try:
            dataset = datasets.load_from_disk(str(path)) if path.is_dir() else datasets.Dataset.from_parquet(str(path))
        except Exception as error:  # noqa: BLE001 - datasets and pyarrow raise many kinds; each is a bad file
            raise UserError(f"{path}: cannot read it as {what}: {one_line(error, empty=type(error).__name__)}") from None
    if isinstance(dataset, datasets.DatasetDict):
        splits = list(dataset)
        if len(splits) != 1:
            raise UserError(f"{path}: a dataset with splits {splits}: name one split's folder ({path / splits[0]})")
        path, dataset = path / splits[0], dataset[splits[0]]
    image_columns = [name for name, feature in dataset.features.items() if _image_feature(datasets, feature)]
    records = dataset.remove_columns(image_columns).to_list()
    if image_columns:
        # The Arrow table itself, memory-mapped; it pickles as its file's path (cheap for DataLoader workers).
        table = dataset.data
        stored: list[list[StoredImage | str]] = [[] for _ in records]
        for name in image_columns:
            for row, images in enumerate(_column_images(str(path), table, name)):
                stored[row].extend(images)
        for record, images in zip(records, stored):
            if images:  # stored images replace a text `image` column (MathVista keeps a path beside its bytes)
                record["image"] = images[0] if len(images) == 1 else images
    return records, _files(path)


def _image_feature(datasets: Any, feature: Any) -> bool:
    return isinstance(feature, datasets.Image) or (_is_list(datasets, feature) and isinstance(feature.feature, datasets.Image))


def _is_list(datasets: Any, feature: Any) -> bool:
    # datasets 4 renamed Sequence to List; older versions have only Sequence.
    kinds = tuple(getattr(datasets, name) for name in ("List", "LargeList", "Sequence") if hasattr(datasets, name))
    return isinstance(feature, kinds)


def _column_images(source: str, table: Any, column: str) -> list[list[StoredImage | str]]:
    """Each row's images in ``column``: stored bytes as references, stored paths as paths.

    Reads only the Arrow null masks and path strings, never the image bytes.
    """
    rows: list[list[StoredImage | str]] = []
    for chunk in table.column(column).chunks:
        is_list = not hasattr(chunk, "field")  # a list of images per row, else one image (a struct) per row
        if is_list:
            lengths = [length or 0 for length in chunk.value_lengths().to_pylist()]
            structs = chunk.flatten()  # skips the values behind null lists and honours slicing
        else:
            lengths, structs = [1] * len(chunk), chunk
        valid = structs.is_valid().to_pylist()
        has_bytes = structs.field("bytes").is_valid().to_pylist()
        paths = structs.field("path").to_pylist()
        flat = 0
        for length in lengths:
            row, images = len(rows), []
            for position in range(length):
                if valid[flat] and has_bytes[flat]:
                    images.append(StoredImage(source, row, column, position if is_list else None, table=table))
                elif valid[flat] and paths[flat]:
                    images.append(paths[flat])
                flat += 1
            rows.append(images)
    return rows


def _files(path: Path) -> list[Path]:
    """The files holding the data: the parquet file, or the folder's Arrow files and metadata."""
    if not path.is_dir():
        return [path]
    return sorted(p for p in path.iterdir() if p.is_file())


@contextmanager
def _quiet(datasets: Any):
    """No progress bars while reading (the CLI draws its own)."""
    was_disabled = getattr(datasets.utils, "are_progress_bars_disabled", lambda: False)()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()
