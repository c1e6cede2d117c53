"""The diffusion demo hub: `python app.py [--checkpoints DIR_OR_REPO] [--device auto|cpu|cuda] ...`.

Loads every model once at start-up (shared read-only by all requests), builds one tab per
module of demos/ (`--tab NAME` for some of them only), and serves them through a bounded queue
with one job at a time per device (configurable). `python app.py --help` lists the flags.

gradio and torch take seconds to import: they are imported once the flags are read and the port
is known to be free, so `--help` and a taken `--port` answer at once.
"""
from __future__ import annotations

import argparse
import os
import socket
import sys

from core.cli import whole_number  # no torch
from core.models.checkpoints import CheckpointError  # no torch: `spaces` (ZeroGPU) must come before it

TABS = ("text_to_image", "class_conditional", "super_resolution", "image_to_image", "attribute_editing", "how_it_works")


def tabs(names=TABS):
    """The tabs `names` (default: all, in order): each is the module demos/NAME.py, with TITLE and
    build(models). Adding a tab is that module and its name in TABS."""
    import importlib
    return [importlib.import_module(f"demos.{name}") for name in names]  # deferred: gradio, torch


def build_app(models, tab_modules=None):
    """The gr.Blocks of the hub (not launched) for a demos.common.Models."""
    import gradio as gr

    from demos import common  # deferred: gradio, torch
    tab_modules = tab_modules if tab_modules is not None else tabs()
    with gr.Blocks(title="Diffusion demo hub", analytics_enabled=False, delete_cache=(1800, 3600)) as demo:
        gr.Markdown("# Diffusion demo hub\nDenoising diffusion on small models trained on the Noto Color Emoji "
                    f"artwork. <small>{models.summary()}</small>")
        for module in tab_modules:
            with gr.Tab(module.TITLE):
                module.build(models)
    return common.named_errors(demo)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python app.py", description=__doc__.split("\n")[0])
    p.add_argument("--host", default=None,
                   help="address to serve on (default: $GRADIO_SERVER_NAME or 127.0.0.1; 0.0.0.0 for the network)")
    p.add_argument("--port", type=whole_number(1, 65535), default=None,
                   help="port (default: $GRADIO_SERVER_PORT or 7860)")
    p.add_argument("--checkpoints", default=os.environ.get("DIFFUSION_HUB_CHECKPOINTS"),
                   help="checkpoints folder or Hub repo id (default: $DIFFUSION_HUB_CHECKPOINTS or ./checkpoints)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--tab", action="append", choices=TABS, metavar="NAME",
                   help=f"serve this tab only (repeat for more; default: all): {', '.join(TABS)}")
    p.add_argument("--share", action="store_true", default=_env_flag("GRADIO_SHARE"),
                   help="also open a public gradio.live link (needs --auth, or --share-without-auth)")
    p.add_argument("--auth", default=os.environ.get("DIFFUSION_HUB_AUTH"), metavar="USER:PASS",
                   help="require this login (default: $DIFFUSION_HUB_AUTH, which keeps it out of `ps`)")
    p.add_argument("--forwarded-allow-ips", default="", metavar="IPS",
                   help="proxies (comma-separated addresses) whose X-Forwarded-For header names the client; "
                        "default none: the login back-off keys on the connecting address")
    p.add_argument("--share-without-auth", action="store_true",
                   help="allow --share with no login: anyone with the link can use this machine")
    p.add_argument("--concurrency", type=int, default=None,
                   help="jobs run at once on the device (default: 1 on CPU, 2 on a GPU)")
    p.add_argument("--max-queue", type=int, default=32, help="requests waiting at most; more are refused")
    p.add_argument("--request-budget", type=float, default=300.0, metavar="SECONDS",
                   help="the longest one request may compute; a longer run stops with an error (default 300)")
    p.add_argument("--max-sessions", type=int, default=128,
                   help="sessions whose state the server keeps (the oldest is dropped; Gradio's default, "
                        "10,000, holds about 0.8 MB each)")
    p.add_argument("--deepfloyd", default=os.environ.get("DIFFUSION_HUB_DEEPFLOYD"), metavar="STAGE_I[,STAGE_II]|none",
                   help="DeepFloyd IF folders or Hub repo ids (default: $DIFFUSION_HUB_DEEPFLOYD, else "
                        "DeepFloyd/IF-I-XL-v1.0,DeepFloyd/IF-II-L-v1.0); none leaves IF out")
    p.add_argument("--deepfloyd-device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="IF's device: auto needs a CUDA GPU; cpu runs it there anyway (very slow)")
    p.add_argument("--deepfloyd-dtype", default=None, choices=("float16", "bfloat16", "float32"),
                   help="IF's weights (default: float16 on a GPU)")
    p.add_argument("--deepfloyd-offload", action="store_true", help="IF: each model on the GPU only while it runs")
    p.add_argument("--deepfloyd-t5-8bit", action="store_true", help="IF: T5 in 8-bit (needs bitsandbytes)")
    args = p.parse_args(argv)
    if args.auth is not None:
        user, sep, password = args.auth.partition(":")
        if not (sep and user and password):
            p.error("--auth must be USER:PASS")
        args.auth = (user, password)
    if args.share and args.auth is None and not args.share_without_auth:
        p.error("--share makes this machine reachable by anyone who has the link; give --auth USER:PASS "
                "(or --share-without-auth to share it anyway)")
    if not args.request_budget > 0:   # also NaN
        p.error("--request-budget must be a positive number of seconds")
    for name in ("concurrency", "max_queue", "max_sessions"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def open_share_link(demo) -> str | None:
    """A public link through Gradio's tunnel, or one printed line saying why there is none
    (e.g. no network to fetch the frpc binary); the local server keeps serving either way."""
    from gradio import networking
    try:
        url = networking.setup_tunnel(local_host=demo.server_name, local_port=demo.server_port,
                                      share_token=demo.share_token, share_server_address=demo.share_server_address,
                                      share_server_tls_certificate=demo.share_server_tls_certificate)
    except Exception as e:  # noqa: BLE001 - any failure: report it and keep serving locally
        causes, err = [], e
        while err is not None and len(causes) < 3:
            cause = str(err).splitlines()[0] if str(err) else type(err).__name__
            if cause not in causes:
                causes.append(cause)
            err = err.__cause__
        print(f"* No share link ({': '.join(causes)}); still serving locally at {demo.local_url}", flush=True)
        return None
    url = "https://" + url.split("://", 1)[-1]
    demo.share, demo.share_url = True, url
    print(f"* Running on public URL: {url}", flush=True)
    return url


def check_port(host: str | None, port: int | None) -> None:
    """Refuse a taken --port before the models load (Gradio would find out only after them).
    Without --port, Gradio picks the first free port from $GRADIO_SERVER_PORT or 7860 itself."""
    if port is None:
        return
    host = host or os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1"
    try:
        socket.create_server((host, port)).close()
    except OSError as e:
        raise OSError(f"port {port} on {host} cannot be used ({e.strerror or e}): is another server on it? "
                      "Choose another --port") from None


def start(args: argparse.Namespace, tab_modules=None):
    """Load the models, build the app and start serving it (without blocking); returns the
    launched gr.Blocks. Raises CheckpointError / ValueError for unusable checkpoints or device."""
    from core.deepfloyd import IF_STAGE_I, IF_STAGE_II, DeepFloydSet  # deferred: torch
    from core.models.modelset import set_cpu_threads  # deferred: torch
    from demos import common, jobs  # deferred: gradio, torch (common imports `spaces`, ZeroGPU, first)
    set_cpu_threads()  # the cores left idle by other jobs (unless OMP_NUM_THREADS says)
    locations = args.deepfloyd or f"{IF_STAGE_I},{IF_STAGE_II}"
    deepfloyd = None if locations.strip().lower() == "none" else DeepFloydSet(
        [x.strip() for x in locations.split(",")], args.deepfloyd_device, dtype=args.deepfloyd_dtype,
        offload=args.deepfloyd_offload, t5_8bit=args.deepfloyd_t5_8bit)
    models = common.Models.load(args.checkpoints, args.device, deepfloyd)
    print(f"* {models.summary()} ({models.root})", flush=True)
    for name, why in models.errors.items():
        print(f"* unavailable: {name}: {why}", flush=True)
    if deepfloyd is not None:
        print(f"* {deepfloyd.label}: " + (f"available ({deepfloyd.reason})" if deepfloyd.available
                                          else f"unavailable: {deepfloyd.reason}"), flush=True)
    jobs.REQUEST_BUDGET_S = args.request_budget   # what every job started from now on may use
    concurrency = args.concurrency or (1 if models.device.type == "cpu" else 2)
    demo = build_app(models, tab_modules if tab_modules is not None else tabs(args.tab or TABS))
    demo.queue(default_concurrency_limit=concurrency, max_size=args.max_queue)
    from starlette.middleware import Middleware

    from demos.access import AuthGate, EventCancel, LoginBackoff  # deferred: starlette, gradio
    os.environ["FORWARDED_ALLOW_IPS"] = args.forwarded_allow_ips   # uvicorn: whose X-Forwarded-For to believe
    demo.launch(server_name=args.host, server_port=args.port, auth=args.auth, share=False,
                state_session_capacity=args.max_sessions,
                prevent_thread_lock=True, css=common.CSS, max_file_size="20mb", quiet=True,
                app_kwargs={"middleware": (   # the first is the outermost: the login gate before all
                    [Middleware(AuthGate), Middleware(LoginBackoff)] if args.auth else []) + [Middleware(EventCancel)]})
    print(f"* Running on local URL: {demo.local_url}", flush=True)
    models.warm_prompt_reader()   # the first prompt then need not wait for it
    return demo


def main(argv=None, tab_modules=None) -> int:
    args = parse_args(argv)
    try:
        check_port(args.host, args.port)
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from demos import common  # deferred: gradio, torch; `spaces` (ZeroGPU) first  # noqa: F401
    try:
        demo = start(args, tab_modules)
    except (CheckpointError, ValueError, OSError) as e:  # OSError: e.g. the port is taken
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.share:
        if os.environ.get("SPACE_ID"):
            print("* --share ignored: a Hugging Face Space is already public", flush=True)
        else:
            if args.auth is None:
                print("* WARNING: sharing without --auth: anyone with the link can run jobs on this machine",
                      flush=True)
            open_share_link(demo)
    demo.block_thread()
    return 0


if __name__ == "__main__":
    sys.exit(main())
