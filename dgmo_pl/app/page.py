"""The page: inputs, the advanced settings, and one player, spectrogram and mask per output (gradio)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import gradio as gr

from dgmo_pl.app.defaults import PageDefaults
from dgmo_pl.app.inputs import MAX_QUERIES, check_recording, parse_queries, whole_number
from dgmo_pl.app.models import ModelSetting, SeparatorCache
from dgmo_pl.app.request import Settings, new_request_folder, separate_request
from dgmo_pl.data import DEMO_MIXTURE

#: Output slots: one per query, plus the residual.
SLOTS = MAX_QUERIES + 1
#: No "share" button: it uploads to a hosting service, and the app is local.
IMAGE_BUTTONS = ["download", "fullscreen"]
MASK_CAPTION = ("Masks: each output's fitted mask on the model's 16 kHz grid, frequency up, time across "
                "(a long recording's windows side by side; bright: kept, dark: removed).")  # fmt: skip


def build_page(cache: SeparatorCache, defaults: PageDefaults, work: Path) -> gr.Blocks:
    """The app's page; each Separate click runs :func:`~dgmo_pl.app.request.separate_request`.

    Args:
        cache: The loaded Separators, shared by every request.
        defaults: The advanced settings' initial values and the length limit.
        work: Where requests write their files (the newest few are kept for the page to serve).
    """
    with gr.Blocks(title="dgmo-pl: separate a sound by describing it") as page:
        gr.Markdown("# dgmo-pl\nUpload or record a recording, say what to pull out of it (one query a line), "
                    f"and press **Separate**. Recordings up to {defaults.max_seconds:g} s.")  # fmt: skip
        with gr.Row():
            with gr.Column():
                audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Recording")
                queries = gr.Textbox(label="Queries (one a line)", lines=2, placeholder="dog barking")
                with gr.Accordion("Advanced", open=False):
                    model = gr.Textbox(label="Model (hub id or local folder)", value=defaults.model)
                    with gr.Row():
                        ddim_steps = gr.Number(label="DDIM steps", value=defaults.ddim_steps, precision=0)
                        rounds = gr.Number(label="Rounds", value=defaults.rounds, precision=0)
                        steps = gr.Number(label="Steps per round", value=defaults.steps_per_round, precision=0)
                        seed = gr.Number(label="Seed", value=defaults.seed, precision=0)
                    joint = gr.Checkbox(label="Joint masks (the outputs add up to the recording)", value=True)
                    residual = gr.Checkbox(label="Residual output: everything else (needs joint masks)", value=True)
                button = gr.Button("Separate", variant="primary")
            mixture = gr.Image(label="Recording: spectrogram", type="pil", interactive=False, buttons=IMAGE_BUTTONS)
        slots: list[tuple[Any, ...]] = []
        for i in range(SLOTS):
            with gr.Row(visible=False) as row:
                player = gr.Audio(label=f"Output {i + 1}", type="filepath", interactive=False, buttons=["download"],
                                  elem_id=f"output-{i}")  # fmt: skip
                spectrogram = gr.Image(label="Spectrogram", type="pil", interactive=False, buttons=IMAGE_BUTTONS)
                mask = gr.Image(label="Mask", type="pil", interactive=False, buttons=IMAGE_BUTTONS)
            slots.append((row, player, spectrogram, mask))
        gr.Markdown(MASK_CAPTION)
        gr.Examples([[DEMO_MIXTURE, "dog barking\nman speaking"]], inputs=[audio, queries], label="Demo mixture")

        def run(audio_path: str | None, text: str | None, model_id: str, ddim: float | None, n_rounds: float | None,
                n_steps: float | None, n_seed: float | None, is_joint: bool, with_residual: bool,
                progress: gr.Progress = gr.Progress()) -> list[Any]:  # noqa: B008 - gradio's progress idiom
            try:
                queries_list = parse_queries(text)
                check_recording(audio_path, defaults.max_seconds)
                setting = ModelSetting(model_id.strip(), whole_number("DDIM steps", ddim),
                                       whole_number("steps per round", n_steps))  # fmt: skip
                settings = Settings(whole_number("rounds", n_rounds), whole_number("seed", n_seed, 0), is_joint,
                                    with_residual)  # fmt: skip
                progress(0.0, desc=f"loading {setting.model}")
                base = cache.get(setting)
                separated = separate_request(base, str(audio_path), queries_list, settings, new_request_folder(work),
                                             lambda f, d: progress(f, desc=d))  # fmt: skip
            except ValueError as err:  # InputError, and a model that does not load
                raise gr.Error(str(err), print_exception=False) from None
            except Exception as err:
                logging.getLogger(__name__).exception("separation failed")
                raise gr.Error(f"separation failed: {type(err).__name__}: {err}") from None
            updates: list[Any] = [separated.mixture]
            for i, (_, _, _, _) in enumerate(slots):
                if i < len(separated.sounds):
                    sound = separated.sounds[i]
                    updates += [gr.update(visible=True), gr.update(value=str(sound.file), label=sound.label),
                                sound.spectrogram, sound.mask]  # fmt: skip
                else:
                    updates += [gr.update(visible=False), None, None, None]
            return updates

        outputs = [mixture, *(component for slot in slots for component in slot)]
        button.click(run, [audio, queries, model, ddim_steps, rounds, steps, seed, joint, residual], outputs,
                     concurrency_limit=1)  # fmt: skip
    return page
