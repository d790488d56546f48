"""The bar above the tabs: checkpoint and VAE dropdowns, refresh, model status.

The page is served before the first model has finished loading, so a timer
polls `shared.models`: every second while a load is pending or running, every
few seconds otherwise (a load can also start from the API or a script, and a
missed transition must not leave the page stale). Choosing a checkpoint or VAE
only queues a load job; the timer then follows it.
"""
from __future__ import annotations

import html

import gradio as gr

from modules import shared

POLL_BUSY_SECONDS = 1.0
POLL_IDLE_SECONDS = 5.0


# Status texts of ModelManager that mean "a load is pending or running": keep polling.
_BUSY_PREFIXES = ("Starting", "Queued", "Loading")


def _loading() -> bool:
    return shared.models.status_text().startswith(_BUSY_PREFIXES)


def status_html(text: str | None = None) -> str:
    text = shared.models.status_text() if text is None else text
    state = "loading" if text.startswith(_BUSY_PREFIXES) else "ready" if text.startswith("Ready") else "problem"
    return f'<div class="easel-model-status easel-model-{state}">{html.escape(text)}</div>'


def _native_size() -> int | None:
    family = shared.models.current_family()
    return family.native_size if family is not None else None


class TopBar:
    """Builds the bar; `bind_native_size` lets the txt2img sliders follow the model family."""

    def __init__(self):
        with gr.Row(elem_id="quicksettings", equal_height=True):
            self.checkpoint = gr.Dropdown(
                label="Stable Diffusion checkpoint", elem_id="setting_sd_model_checkpoint",
                choices=shared.models.checkpoint_titles(), value=shared.models.current_title(),
                interactive=True, scale=3, min_width=260,
            )
            self.refresh = gr.Button("🔄", elem_id="refresh_sd_model_checkpoint", scale=0, min_width=40,
                                     elem_classes=["easel-tool"])
            self.vae = gr.Dropdown(
                label="SD VAE", elem_id="setting_sd_vae", choices=shared.models.vae_names(),
                value=self._current_vae(), interactive=True, scale=2, min_width=180,
            )
            with gr.Column(scale=3, min_width=240):
                self.status = gr.HTML(status_html(), elem_id="sd_model_status")
        self.timer = gr.Timer(POLL_BUSY_SECONDS)
        # Native size of the family the sliders were last set for; None until the first model is known.
        self.family_size = gr.State(None)
        self._size_outputs: list = []

    @staticmethod
    def _current_vae() -> str:
        names = shared.models.vae_names()
        value = getattr(shared.opts, "sd_vae", "Automatic")
        return value if value in names else names[0]

    def bind_native_size(self, width: gr.Slider, height: gr.Slider) -> None:
        self._size_outputs = [width, height]

    def wire(self) -> None:
        """Attach the events; call after the tabs exist so the size sliders are known."""
        outputs = [self.status, self.checkpoint, self.timer, self.family_size, *self._size_outputs]
        n_sizes = len(self._size_outputs)

        def poll(last_size):
            settled = not _loading()
            size = _native_size()
            size_updates = [gr.skip()] * n_sizes
            if settled and size is not None and size != last_size:
                size_updates = [gr.update(value=size)] * n_sizes
                last_size = size
            return (
                status_html(),
                gr.update(choices=shared.models.checkpoint_titles(), value=shared.models.current_title()),
                gr.Timer(POLL_IDLE_SECONDS if settled else POLL_BUSY_SECONDS),
                last_size,
                *size_updates,
            )

        self.timer.tick(poll, inputs=[self.family_size], outputs=outputs, show_progress="hidden",
                        concurrency_limit=None)

        def choose_checkpoint(title):
            if title:
                try:
                    shared.models.request_load(title)
                except ValueError as exc:  # the file went away since the list was made
                    return status_html(str(exc)), gr.skip()
            return status_html(), gr.Timer(POLL_BUSY_SECONDS)

        self.checkpoint.input(choose_checkpoint, inputs=[self.checkpoint], outputs=[self.status, self.timer],
                              show_progress="hidden")

        def choose_vae(name):
            if name:
                shared.models.request_vae(name)
            return status_html(), gr.Timer(POLL_BUSY_SECONDS)

        self.vae.input(choose_vae, inputs=[self.vae], outputs=[self.status, self.timer], show_progress="hidden")

        def refresh():
            shared.models.refresh()
            return (
                gr.update(choices=shared.models.checkpoint_titles(), value=shared.models.current_title()),
                gr.update(choices=shared.models.vae_names()),
                status_html(),
                gr.Timer(POLL_BUSY_SECONDS),
            )

        self.refresh.click(refresh, outputs=[self.checkpoint, self.vae, self.status, self.timer],
                           show_progress="hidden")
