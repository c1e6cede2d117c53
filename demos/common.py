"""What every tab shares, one module per concern, all importable from here as before:
`demos.models` (the models, loaded once, read-only; the bases' defaults), `demos.errors`
(friendly errors), `demos.endpoints` (every endpoint answers with a named error), `demos.uploads`
(uploaded files and other inputs), `demos.jobs` (a worker that turns the sampler callback into
progress and live previews), `demos.outputs` (result PNGs that carry their parameters),
`demos.examples` (example inputs made offline); here: ZeroGPU and the CSS.

Import this module before anything that imports torch: on a ZeroGPU Space `spaces` has to
be imported before CUDA is initialised.
"""
from __future__ import annotations

try:  # Hugging Face ZeroGPU; absent everywhere else
    import spaces
except ImportError:
    spaces = None

from collections.abc import Callable

from demos.endpoints import _never_unnamed, named_errors
from demos.errors import (
    CLOSE_ERROR_TOASTS,
    MAX_ERROR_CHARS,
    error,
    excerpt,
    log_refusal,
    public,
    run_on,
    show_note,
    user_errors,
)
from demos.examples import (
    EXAMPLE_DIR,
    EXAMPLE_EMOJI,
    PEOPLE_EMOJI,
    class_labels,
    example_image,
    example_images,
    people_first_examples,
)
from demos.jobs import (
    JOB_THREAD,
    PREVIEW_EVERY_S,
    Job,
    OverBudget,
    StageProgress,
    follow,
    no_change,
    preview,
    stream,
    wait_for,
)
from demos.models import (
    BASE_CHOICES,
    MODEL_NAMES,
    Models,
    base_sampling,
    decoder_guidance_input,
    follow_base_defaults,
    sampling_of,
)
from demos.outputs import OUTPUT_DIR, OUTPUT_MAX_AGE_S, WORK_DIR, RequestFiles, output_folder
from demos.uploads import (
    EDITOR_KEYS,
    FILE_COMPONENTS,
    MAX_SEED,
    NOT_UPLOADED,
    as_int,
    check_uploaded,
    image_input,
    open_upload,
    seed_input,
    table_output,
    upload_roots,
)

PIXELATED = "pixelated"  # CSS class: small images scaled up without blur

STAGE = "stage"  # CSS class: an output image that fills its box, whatever its resolution

RESULTS = "results"  # CSS class: a gallery of results, each shown at most 256 px (2x of 128), one or many

TRUE_SIZE = "true-size"  # CSS class: an image shown at its own size (a labelled grid), shrunk only to fit

CSS = (f".{PIXELATED} img {{ image-rendering: pixelated; }}\n"
       f".{STAGE} img {{ width: 100%; height: 100%; object-fit: contain; }}\n"
       # Gradio gives a lone image the gallery's whole width (700 px for a 128 px emoji): fixed-size cells instead
       f".{RESULTS} .grid-container {{ grid-template-columns: repeat(auto-fill, minmax(96px, 256px)) !important; "
       "grid-template-rows: none !important; grid-auto-rows: auto !important; }\n"
       f".{RESULTS} .thumbnail-item {{ aspect-ratio: 1 / 1; }}\n"
       # below the box's label, which Gradio draws over the image's top-left corner (the grid's column names)
       f".{TRUE_SIZE} img {{ width: auto !important; height: auto !important; max-width: 100%; "
       "margin-top: 30px; }")


def gpu(fn: Callable, duration: int = 120) -> Callable:
    """`spaces.GPU` on a ZeroGPU Space (a GPU is attached for each call), a no-op elsewhere."""
    return spaces.GPU(duration=duration)(fn) if spaces is not None else fn


__all__ = [
    'gpu', 'CSS', 'PIXELATED', 'RESULTS', 'STAGE', 'TRUE_SIZE', 'MODEL_NAMES', 'BASE_CHOICES', 'Models',
    'decoder_guidance_input', 'sampling_of', 'base_sampling', 'follow_base_defaults',
    'CLOSE_ERROR_TOASTS', 'MAX_ERROR_CHARS', 'error', 'log_refusal', 'run_on', 'public', 'show_note', 'user_errors',
    'excerpt', 'named_errors', '_never_unnamed', 'FILE_COMPONENTS', 'NOT_UPLOADED', 'upload_roots', 'EDITOR_KEYS',
    'check_uploaded', 'open_upload', 'image_input', 'MAX_SEED', 'as_int', 'seed_input', 'table_output',
    'PREVIEW_EVERY_S', 'JOB_THREAD', 'OverBudget', 'Job', 'follow', 'wait_for', 'no_change', 'StageProgress',
    'stream', 'preview', 'WORK_DIR', 'OUTPUT_DIR', 'OUTPUT_MAX_AGE_S', 'output_folder', 'RequestFiles',
    'EXAMPLE_DIR', 'EXAMPLE_EMOJI', 'PEOPLE_EMOJI', 'example_image', 'people_first_examples', 'example_images',
    'class_labels'
]
