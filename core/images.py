"""Images in and out: any PIL image (any size or mode) to a [-1, 1] tensor, tensors to PIL,
grids of images, and PNGs that carry their generation parameters in a text chunk."""
from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, PngImagePlugin, UnidentifiedImageError

MIN_SIDE = 8
MAX_SIDE = 4096
PARAMETERS_KEY = "parameters"


class ImageError(ValueError):
    """An input image that cannot be used; the message says why."""


class ImageSizeError(ImageError):
    """An input image too small or too large (read from its header)."""


# Pillow refuses to open an image of more than twice this many pixels (DecompressionBombError),
# a bound far above what MAX_SIDE lets through, so a bomb costs nothing before open_image refuses it.
Image.MAX_IMAGE_PIXELS = 4 * MAX_SIDE * MAX_SIDE


def check_side(name: str, size: tuple[int, int]) -> None:
    """ImageError unless each side of `size` (w, h) is from MIN_SIDE to MAX_SIDE pixels."""
    w, h = size
    if min(w, h) < MIN_SIDE or max(w, h) > MAX_SIDE:
        raise ImageSizeError(f"{name} is {w}x{h}; each side must be between {MIN_SIDE} and {MAX_SIDE} pixels")


def image_size(path: str | os.PathLike, name: str | None = None) -> tuple[int, int]:
    """(w, h) of an image file read from its header, without decoding the pixels; an ImageError
    names it as `name` when it is no image Pillow knows or a decompression bomb."""
    name = name or f"image {path}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)   # check_side says it in one line
            with Image.open(path) as im:
                return im.size
    except Image.DecompressionBombError as e:
        raise ImageSizeError(f"{name} is too large to open (more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels); "
                         f"each side must be between {MIN_SIDE} and {MAX_SIDE} pixels") from e
    except UnidentifiedImageError as e:
        raise ImageError(f"{name} cannot be read: not an image format Pillow knows") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{name} cannot be read: {getattr(e, 'strerror', None) or e}") from e


def open_image(path: str | os.PathLike, name: str | None = None) -> Image.Image:
    """Open and fully decode an image file, with an ImageError for missing, corrupt or oversized
    files that names it as `name` (default: "image PATH"; a server says "the uploaded image"
    instead of the path of its upload folder). The size is checked from the header first."""
    path = Path(path)
    name = name or f"image {path}"
    if path.is_dir():
        raise ImageError(f"{name} is a folder, not an image file")
    if not path.is_file():
        raise ImageError(f"{name} does not exist")
    check_side(name, image_size(path, name))   # from the header: a huge image is refused before decoding
    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()
    except UnidentifiedImageError as e:
        raise ImageError(f"{name} cannot be read: not an image format Pillow knows") from e
    except (OSError, SyntaxError) as e:  # PIL's own messages (truncated, broken data); errno ones without the path
        raise ImageError(f"{name} cannot be read: {getattr(e, 'strerror', None) or e}") from e


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB on white, whatever the mode: alpha (RGBA, LA, P with transparency) is composited
    over white like the emoji renders; L, P, CMYK, I;16 ... are converted."""
    if not isinstance(image, Image.Image):
        raise ImageError(f"expected a PIL image, got {type(image).__name__}")
    check_side("image", image.size)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(image, dtype=np.float64)
        arr = 255 * (arr - arr.min()) / max(arr.max() - arr.min(), 1)
        image = Image.fromarray(arr.astype(np.uint8), "L")
    if image.mode == "F":
        image = image.convert("L")
    if image.mode == "P" or "A" in image.getbands() or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def pil_to_tensor(image: Image.Image, size: int | None = None) -> torch.Tensor:
    """[1, 3, size, size] in [-1, 1]; non-square images are padded with white to a square
    (emoji are square), then resized with antialiasing."""
    rgb = to_rgb(image)
    w, h = rgb.size
    if w != h:
        side = max(w, h)
        canvas = Image.new("RGB", (side, side), (255, 255, 255))
        canvas.paste(rgb, ((side - w) // 2, (side - h) // 2))
        rgb = canvas
    if size is not None and rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.LANCZOS if size < rgb.size[0] else Image.Resampling.BICUBIC)
    x = torch.from_numpy(np.asarray(rgb, dtype=np.float32).copy()).permute(2, 0, 1)
    return (x / 127.5 - 1.0).unsqueeze(0)


def tensor_to_pil(x: torch.Tensor) -> list[Image.Image]:
    """[B, 3, H, W] in [-1, 1] -> a list of RGB images."""
    if x.ndim == 3:
        x = x.unsqueeze(0)
    arr = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return [Image.fromarray(a.permute(1, 2, 0).cpu().numpy(), "RGB") for a in arr]


def image_grid(images: Sequence[Image.Image] | torch.Tensor, columns: int | None = None,
               padding: int = 0) -> Image.Image:
    """Images (PIL, or a [B, 3, H, W] tensor in [-1, 1]) side by side in rows of `columns` (about
    square by default), `padding` white pixels around and between them."""
    if isinstance(images, torch.Tensor):
        images = tensor_to_pil(images)
    images = list(images)
    if not images:
        raise ValueError("a grid needs at least one image")
    if len(images) == 1 and padding == 0:
        return images[0]
    columns = columns or (min(len(images), 4) if len(images) <= 8 else math.ceil(math.sqrt(len(images))))
    rows = math.ceil(len(images) / columns)
    w, h = images[0].size
    canvas = Image.new("RGB", (columns * (w + padding) + padding, rows * (h + padding) + padding), (255, 255, 255))
    for i, im in enumerate(images):
        canvas.paste(im, (padding + (i % columns) * (w + padding), padding + (i // columns) * (h + padding)))
    return canvas


def grid_image(rows: Sequence[torch.Tensor]) -> Image.Image:
    """Rows of images [n, 3, r, r] in [-1, 1] (equal n) as one picture, 2 px white between cells."""
    return image_grid(torch.cat([r.detach().float().cpu() for r in rows]), rows[0].shape[0], padding=2)


def _label_font(size: int):
    from PIL import ImageFont
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def labelled_rows(rows: Sequence[torch.Tensor], labels: Sequence[str], column_labels: Sequence[str] = (),
                  scale: int = 2) -> Image.Image:
    """Rows of images [n, 3, r, r] in [-1, 1] as one picture a person can read: each row named on
    its left, `column_labels` (if any) spread evenly over the columns on top (one per cell, or one
    per block of cells), every cell enlarged `scale` times (nearest neighbour, so pixels stay
    sharp) with 2 px white between cells."""
    from PIL import ImageDraw
    if len(rows) != len(labels) or not rows:
        raise ValueError(f"got {len(labels)} labels for {len(rows)} rows")
    cells = [tensor_to_pil(r.detach().float().cpu().clamp(-1, 1)) for r in rows]
    n = max(len(c) for c in cells)
    side = cells[0][0].width * scale
    font = _label_font(13)
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left = int(max(draw.textlength(str(label), font=font) for label in labels)) + 10
    top = 18 if column_labels else 0
    pad = 2
    canvas = Image.new("RGB", (left + n * (side + pad) + pad, top + len(rows) * (side + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (row, label) in enumerate(zip(cells, labels)):
        y = top + pad + i * (side + pad)
        draw.text((4, y + side / 2), str(label), fill="black", font=font, anchor="lm")
        for j, im in enumerate(row):
            canvas.paste(im.resize((side, side), Image.Resampling.NEAREST), (left + pad + j * (side + pad), y))
    if column_labels:
        width = n * (side + pad) / len(column_labels)   # a label per cell or per block of cells
        for k, text in enumerate(column_labels):
            draw.text((left + pad + (k + 0.5) * width, top / 2), str(text), fill="black", font=font, anchor="mm")
    return canvas


def save_grid(images: torch.Tensor, path: str | os.PathLike, columns: int) -> None:
    """A training sample grid: [B, 3, H, W] in [-1, 1], `columns` a row, 2 px white between them."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image_grid(images.detach().float().cpu(), columns, padding=2).save(path)


def resize_tensor(x: torch.Tensor, size: int, mode: str = "bicubic") -> torch.Tensor:
    kw = {} if mode in ("nearest", "area") else {"align_corners": False}
    return F.interpolate(x, size=(size, size), mode=mode, **kw).clamp(-1, 1)


def resize_image(x: torch.Tensor, size: int) -> torch.Tensor:
    """[B, 3, H, W] at size x size: unchanged when already there, box (area) average when
    shrinking (as the data set's lower resolutions), bicubic when enlarging."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x.clone()
    return resize_tensor(x, size, "area" if x.shape[-1] > size else "bicubic")


def check_images(images: torch.Tensor, name: str = "image") -> torch.Tensor:
    """A float tensor [B, 3, H, W] (values in [-1, 1]) as float32, else ValueError naming it."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3 or \
            not images.is_floating_point():
        raise ValueError(f"{name} must be a float tensor [B, 3, H, W] in [-1, 1]")
    return images.float()




def png_info(parameters: dict) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text(PARAMETERS_KEY, json.dumps(parameters, sort_keys=True))
    return info


def read_parameters(path_or_image) -> dict | None:
    """The generation parameters stored by `save_png`, or None."""
    image = path_or_image if isinstance(path_or_image, Image.Image) else Image.open(path_or_image)
    text = getattr(image, "text", {}).get(PARAMETERS_KEY) or image.info.get(PARAMETERS_KEY)
    return json.loads(text) if text else None


def _umask() -> int:
    mask = os.umask(0)   # reading the umask means setting it: set it straight back
    os.umask(mask)
    return mask


def save_png(image: Image.Image, path: str | os.PathLike, parameters: dict) -> Path:
    """Write a PNG with its parameters, atomically (temporary file, then rename), with the mode an
    ordinary new file gets (0666 less the umask; mkstemp's own is 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        image.save(tmp, format="PNG", pnginfo=png_info(parameters))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
