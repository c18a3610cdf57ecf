"""Pillow renderer of the embedded world: objects on a grid, drawn in visual styles.

Images are ``size`` x ``size`` pixels split into a ``grid`` x ``grid`` board; each object
fills one cell. With the tiny model's patch size equal to the cell size, one object is one
patch, which the tiny model learns fastest (DESIGN.md). Styles are the visual domain
shift between tasks, as natural photos vs. charts differ between real benchmarks.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

# Saturated and spread apart: the closest pairs (yellow/orange, red/orange, blue/purple) must
# differ by more than the pixels a shape change moves, or the tiny model learns shape first and
# colour only on some seeds (issue 10: `code` at 14.5% with the old, duller palette and 1-px
# outlines). tests/unit/test_world.py keeps the margins.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (200, 0, 0),
    "green": (0, 180, 40),
    "blue": (20, 60, 255),
    "yellow": (255, 240, 0),
    "purple": (160, 0, 200),
    "orange": (255, 130, 0),
}
SHAPES = ("square", "circle", "triangle", "cross")
OUTLINE_WIDTH = 2  # px; 1-px outlines left too few coloured pixels per patch to learn colour from
CROSS_WIDTH = {True: 4, False: OUTLINE_WIDTH}  # filled / outline style
STYLES = ("plain", "noisy", "outline", "dark", "striped")


@dataclass(frozen=True)
class Thing:
    """An object on the board: grid cell and appearance."""

    row: int
    col: int
    color: str
    shape: str


def _draw_shape(draw: ImageDraw.ImageDraw, thing: Thing, cell: int, fill: bool) -> None:
    x0, y0 = thing.col * cell + 1, thing.row * cell + 1
    x1, y1 = x0 + cell - 3, y0 + cell - 3
    rgb = COLORS[thing.color]
    kwargs = {"fill": rgb} if fill else {"outline": rgb, "width": OUTLINE_WIDTH}
    if thing.shape == "square":
        draw.rectangle((x0, y0, x1, y1), **kwargs)
    elif thing.shape == "circle":
        draw.ellipse((x0, y0, x1, y1), **kwargs)
    elif thing.shape == "triangle":
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], **kwargs)
    elif thing.shape == "cross":
        mid_x, mid_y = (x0 + x1) // 2, (y0 + y1) // 2
        draw.line((x0, mid_y, x1, mid_y), fill=rgb, width=CROSS_WIDTH[fill])
        draw.line((mid_x, y0, mid_x, y1), fill=rgb, width=CROSS_WIDTH[fill])
    else:
        raise ValueError(f"unknown shape {thing.shape!r}")


def render(things: list[Thing], style: str, rng: random.Random, size: int = 48, grid: int = 3) -> Image.Image:
    """Draw ``things`` on a board in ``style``.

    Args:
        things: Objects to draw (distinct cells).
        style: One of :data:`STYLES`.
        rng: Source of the style's randomness (noise, stripe phase).
        size: Image side in pixels.
        grid: Cells per side.

    Returns:
        An RGB image.
    """
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; valid: {', '.join(STYLES)}")
    background = (20, 20, 20) if style == "dark" else (245, 245, 245)
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    if style == "striped":
        phase = rng.randrange(4)
        for y in range(phase, size, 4):
            draw.line((0, y, size, y), fill=(200, 200, 215))
    cell = size // grid
    for thing in things:
        _draw_shape(draw, thing, cell, fill=style != "outline")
    if style == "noisy":
        pixels = image.load()
        for _ in range(size * size // 6):
            x, y = rng.randrange(size), rng.randrange(size)
            grey = rng.randrange(60, 200)
            pixels[x, y] = (grey, grey, grey)
    return image


def random_things(rng: random.Random, count: int, grid: int = 3, color: str | None = None, shape: str | None = None) -> list[Thing]:
    """``count`` objects in distinct random cells; colour/shape random unless fixed."""
    cells = rng.sample(range(grid * grid), count)
    return [
        Thing(cell // grid, cell % grid, color or rng.choice(list(COLORS)), shape or rng.choice(SHAPES))
        for cell in cells
    ]
