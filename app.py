"""Easel: start the web UI and/or the API.

flags -> paths and settings -> job queue and model manager -> FastAPI app
with the /sdapi/v1 API and the Gradio page mounted -> uvicorn on 127.0.0.1.
The page answers at once: the model loads in the background on the worker
queue, and torch/diffusers are imported there, not here.
"""
from __future__ import annotations

import logging
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("DISABLE_TELEMETRY", "1")

STARTED = time.perf_counter()
log = logging.getLogger("easel")

SHARE_UNAVAILABLE = ("--share: a public link needs Gradio's tunnel service on the internet, which this "
                     "machine cannot reach; serving locally only.")


def build_state(cmd_opts):
    """Paths, settings, queue and model manager, installed into modules.shared."""
    from modules import model_manager, options, paths as paths_module, shared
    from modules.jobs import JobQueue

    paths = paths_module.from_cmd_opts(cmd_opts)
    paths.ensure_dirs()
    opts = options.Options()
    opts.load(paths.config_file)
    queue = JobQueue()

    def choose_device():
        from modules import devices

        choice = devices.choose(cmd_opts, getattr(opts, "precision", "fp32"))
        log.info("device: %s", choice.describe())
        return choice

    models = model_manager.ModelManager(queue, paths, opts, choose_device, extra_checkpoints=[cmd_opts.ckpt])
    opts.onchange("precision", models.device_settings_changed, call=False)   # reload the model in the new precision
    shared.init(cmd_opts=cmd_opts, opts=opts, paths=paths, queue=queue, models=models)
    return shared


def load_extensions(shared, cmd_opts) -> None:
    """Extensions: find, install where needed, import scripts (timed), register their settings."""
    from modules import extensions, script_callbacks, scripts

    script_callbacks.clear_callbacks()   # create_app may run more than once in one process (tests)
    extensions.register_options(shared.opts)
    found = []
    exts = extensions.discover(shared.paths, cmd_opts, shared.opts.disabled_extensions, found,
                               disable_all=shared.opts.disable_all_extensions)
    extensions.installed[:] = found
    extensions.loaded[:] = exts
    extensions.run_installs(exts)
    scripts.load_scripts(exts)
    extensions.print_load_times(cmd_opts, shared.opts.disable_all_extensions)
    scripts.initialize_runners()
    script_callbacks.ui_settings_callback()
    shared.models.callbacks.append(script_callbacks.model_loaded_callback)


def create_app(cmd_opts):
    """The FastAPI app with the API (when asked) and the page (unless --nowebui)."""
    from fastapi import FastAPI

    from modules import cmd_args, restart, security

    from modules import script_callbacks

    shared = build_state(cmd_opts)
    load_extensions(shared, cmd_opts)
    app = FastAPI(title="Easel", docs_url="/docs" if (cmd_opts.api or cmd_opts.nowebui) else None)
    security.install(app, cmd_opts)
    restart.install_routes(app)   # /internal/ping: the page waits on it across "Apply and restart UI"
    if cmd_opts.api or cmd_opts.nowebui:
        from modules.api import routes

        routes.mount(app)
    blocks = None
    if not cmd_opts.nowebui:
        import gradio as gr

        from modules import ui

        script_callbacks.before_ui_callback()
        blocks = ui.create_ui()
        credentials = cmd_args.gradio_credentials(cmd_opts)
        app = gr.mount_gradio_app(app, blocks, path="/", auth=credentials or None, **ui.ui_launch_kwargs())
    script_callbacks.app_started_callback(blocks, app)
    return app, shared


def start_model_load(shared, cmd_opts) -> None:
    if shared.models.checkpoints():
        try:
            shared.models.request_load(cmd_opts.ckpt)
        except ValueError as exc:
            log.error("%s", exc)
    else:
        log.warning("%s", shared.models.status_text())


def main(argv=None) -> None:
    import atexit

    from modules import cmd_args, extensions, restart, script_callbacks

    if argv is None:
        restart.enable()   # the Extensions tab's "Apply and restart UI" re-runs this same command line
    cmd_opts = extensions.parse_args_with_extensions(argv)   # extensions' preload.py add flags first
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if cmd_opts.exit:
        return
    from modules import malloc_tuning

    # freed activations stay in the process: measured 0.92x per SD1.5 U-Net step and 0.73x per
    # VAE decode (bf16, 2 cores), identical outputs (benchmarks/README.md)
    malloc_tuning.keep_freed_memory(large_blocks_too=True)
    app, shared = create_app(cmd_opts)
    atexit.register(script_callbacks.script_unloaded_callback)
    # The model loads once the server is listening: its imports (torch, diffusers) would
    # otherwise compete with the page's start-up for the interpreter.
    app.router.on_startup.append(lambda: start_model_load(shared, cmd_opts))
    host = cmd_args.server_name(cmd_opts)
    if cmd_opts.share:
        print(SHARE_UNAVAILABLE, flush=True)
    if cmd_opts.listen and not (cmd_opts.gradio_auth or cmd_opts.gradio_auth_path or getattr(cmd_opts, "api_auth", None)):
        print("WARNING: --listen makes Easel reachable from other machines and no --gradio-auth/--api-auth is set.", flush=True)
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://{shown_host}:{cmd_opts.port}"
    print(f"Running on local URL:  {url}  (ready in {time.perf_counter() - STARTED:.1f} s)", flush=True)
    if cmd_opts.autolaunch:
        import webbrowser

        webbrowser.open(url)
    import uvicorn

    uvicorn.run(app, host=host, port=cmd_opts.port, log_level="warning", timeout_graceful_shutdown=1)


if __name__ == "__main__":
    sys.exit(main())
