"""The web demo: an image in, its caption, n-best list, attention word by word and timing out (Gradio).

    describe(model, path, decoding)     the captioning of one upload, a plain function: `Description`
    page_decoding(model, ...)           the page's decoding controls as a `Decoding` (`NotCaptioned`: why not)
    example_images(run_dir)             the first test images of the run's own data, or a note why there are none
    build_app(model, examples)          the Gradio `Blocks` app around them; `load_app(run_dir)` builds it for a run
    launch(app, host, port)             serves it in the background (`python -m captioner.demo RUN` waits)
    screenshot(run_dir, path)           a PNG of the page with a caption and its attention maps (headless Chromium)

An upload is read as `python -m captioner.caption` reads a file (`captioner.data.images.read_image`: EXIF
orientation, transparency onto white, the pixel limit checked from the header before decoding), resized
and normalised by the same functions and decoded by `Captioner.generate` with a `Decoding` from
`Captioner.decoding_settings`, so the page gives the caption command's caption for the same file and
settings. Files that cannot be used come back as a message (`NotCaptioned`), never as a stack trace.

Offline: the page is Gradio's own bundle, served by the app (fonts included); analytics, the version check
and Hugging Face telemetry are off, nothing is shared, server-side rendering (a Node process) is not used.
One request is decoded at a time; others wait in Gradio's queue.
"""

import dataclasses
import math
import os
import socket
import time

import numpy as np

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
EXAMPLES = 8  # test images offered as examples
PANEL_SIDE = 256  # attention images: the long side, in pixels (small images are enlarged, large ones reduced)
QUEUE_SIZE = 16  # requests waiting beyond the one being decoded; more are refused with Gradio's "queue full"
MAX_FILE_SIZE = "100mb"  # uploads larger than this are refused by Gradio before they are stored
CACHE_LIFETIME = (1800, 3600)  # every 30 min, Gradio deletes the uploads and outputs older than an hour
NBEST_HEADERS = ["rank", "caption", "score", "log-probability"]


class NotCaptioned(ValueError):
    """An upload that cannot be captioned, or settings that do not go together; the message says why."""


@dataclasses.dataclass
class Description:
    """What the page shows for one image.

    Args:
        caption: str, the best caption.
        nbest: list of `[rank, caption, score, log_prob]` rows, best first (one row when one caption is asked).
        attention: list of `(uint8 [H, W, 3] image, label)`: the image under each word's attention, then `<end>`.
        timing: str, the decoding used and how long each part took.
    """

    caption: str
    nbest: list
    attention: list
    timing: str

    def __iter__(self):
        return iter((self.caption, self.nbest, self.attention, self.timing))


# ---------------------------------------------------------------- the captioning, without Gradio


# The command line's flags, as the page names the same settings (for `decoding_settings`' messages).
PAGE_NAMES = {"--beam-size": "beam size", "--alpha": "length penalty alpha", "--num-captions": "captions",
              "--no-repeat-ngram-size": "no repeated n-grams", "--min-length": "at least ... words",
              "--sample": "sample", "--temperature": "temperature", "--top-p": "top-p", "--seed": "seed",
              "--top-k": "top-k", "--beam-groups": "beam groups", "--diversity-strength": "diversity strength",
              "--repetition-penalty": "repetition penalty", "--ban-words": "banned words"}


def page_decoding(model, beam_size=None, alpha=None, num_captions=None, no_repeat_ngram_size=None,
                  min_length=None, sample=False, temperature=None, top_p=None, seed=None):
    """The `Decoding` of the page's controls: `model.decoding_settings` of them (None: the model's default).

    The page always sends every control; alpha counts only for beam search, the sampling ones
    (temperature, top-p, seed) only with `sample`, and a blank seed draws anew each time. Raises `NotCaptioned` with `decoding_settings`' reason
    for settings that do not go together.
    """
    def number(value, kind, name):
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise NotCaptioned(f"{name} must be a number, got {value!r}") from None
        if not math.isfinite(number) or (kind is int and number != int(number)):
            raise NotCaptioned(f"{name} must be a {'whole' if kind is int else 'finite'} number, got {value!r}")
        return kind(number)

    sample = bool(sample)
    given = dict(beam_size=number(beam_size, int, "The beam size"), alpha=number(alpha, float, "Alpha"),
                 num_captions=number(num_captions, int, "The number of captions"),
                 no_repeat_ngram_size=number(no_repeat_ngram_size, int, "The n-gram size"),
                 min_length=number(min_length, int, "The minimum length"), sample=sample or None)
    if sample or given["beam_size"] == 1:
        given["alpha"] = None  # the page always shows alpha; it is beam search's only
    if sample:
        given.update(temperature=number(temperature, float, "The temperature"), top_p=number(top_p, float, "Top-p"),
                     seed=number(seed, int, "The seed"))
    try:
        decoding = model.decoding_settings(**given)
        from captioner.models.captioner import check_decoding

        check_decoding(model.decoder, model.decoder.max_length, decoding)
    except ValueError as error:
        message = str(error)
        for flag in sorted(PAGE_NAMES, key=len, reverse=True):
            message = message.replace(flag, f'"{PAGE_NAMES[flag]}"')
        raise NotCaptioned(f"These decoding settings do not go together: {message}") from None
    return decoding


def describe(model, path, decoding=None):
    """Captions the image file `path` as `python -m captioner.caption` does, for the page.

    Args:
        model: a `Captioner` (`captioner.load`).
        path: str, the uploaded file.
        decoding: a `Decoding` (`page_decoding`), or None for the model's recorded default.

    Returns:
        a `Description` (unpacks as `caption, nbest, attention, timing`).

    Raises:
        NotCaptioned: the file is not an image, is unreadable or over `captioner.data.images.MAX_PIXELS`.
    """
    from captioner.data import images as images_lib
    from captioner.data.pipeline import normalize_image, resize_image

    decoding = decoding or model.default_decoding
    name = os.path.basename(path) if path else "the upload"
    start = time.perf_counter()
    pixels, reason = images_lib.read_image(path) if path else (None, "no image")
    if reason:
        raise NotCaptioned(f"{name}: {reason}")
    height, width = pixels.shape[:2]
    image = normalize_image(resize_image(pixels, model.image_size), model.normalization).numpy()
    pixels = panel_image(pixels)  # all the maps need: the full-size pixels go
    read = time.perf_counter()
    compiled = len(getattr(model, "_generate_fns", ()))
    result = model.generate(image[None], decoding=decoding)
    caption = result["captions"].numpy()[0].decode("utf-8")
    decoded = time.perf_counter()
    if decoding.num_captions > 1:
        rows = [[rank, text.decode("utf-8"), round(float(score), 4), round(float(log_prob), 4)]
                for rank, (text, score, log_prob) in enumerate(zip(
                    *(result[f"nbest_{key}"].numpy()[0] for key in ("captions", "scores", "log_probs"))), 1)]
    else:
        rows = [[1, caption, round(float(result["scores"].numpy()[0]), 4),
                 round(float(result["log_probs"].numpy()[0]), 4)]]
    attention = attention_images(pixels, caption, result["attention"].numpy()[0], model.encoder.grid_shape)
    drawn = time.perf_counter()
    timing = (f"{decoding.describe()}: {drawn - start:.2f} s for {name} ({width} x {height}): reading "
              f"{read - start:.2f} s, decoding {decoded - read:.2f} s, attention maps {drawn - decoded:.2f} s")
    if len(getattr(model, "_generate_fns", ())) > compiled:
        timing += " (the decoding includes compiling it, once for these settings)"
    if not caption:
        timing += ". The caption is empty: the model ended it at once (\"at least ... words\" prevents that)"
    return Description(caption, rows, attention, timing)


def panel_image(pixels, side=PANEL_SIDE):
    """`pixels` resized to `side` on their long side (small images enlarged, large ones reduced), for the maps."""
    from PIL import Image

    height, width = pixels.shape[:2]
    scale = side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(pixels).resize(size, Image.BILINEAR))


def attention_images(pixels, caption, attention, grid_shape):
    """The image under each word's attention map, as `attention_figure` draws its panels (inferno at 0.6).

    Args:
        pixels: uint8 `[H, W, 3]`, drawn at their size (`panel_image` makes them small).
        caption: str; word i was written at step i.
        attention: `[L, P]`, the decoder's attention at each step.
        grid_shape: (rows, columns) of the encoder's regions.

    Returns:
        list of `(uint8 [H, W, 3], "i. word")`, one per word and the end token.
    """
    from matplotlib import colormaps

    from captioner.inference import figures

    height, width = pixels.shape[:2]
    base = pixels.astype(np.float32)
    colours = colormaps["inferno"]
    words = (caption.split() + ["<end>"])[:len(attention)]
    panels = []
    for step, word in enumerate(words):
        heat = colours(figures.attention_map(attention[step], grid_shape, width, height))[..., :3] * 255.0
        panels.append((np.clip(0.4 * base + 0.6 * heat, 0, 255).astype(np.uint8), f"{step + 1}. {word}"))
    return panels


def example_images(run_dir, count=EXAMPLES):
    """`(paths, note)`: the first `count` images of the run's test split, found through its config, or no
    paths and a note saying why (its data is not on this machine, or cannot be read)."""
    from captioner import runs
    from captioner.data import datasets, imagefolder

    try:
        config = runs.load_config(run_dir)
        root = datasets.existing_data_root(config)
        split = datasets.read_split(config.dataset, root, "test", config.karpathy_json, config.skip_missing_images,
                                    options=imagefolder.Options.of(config, run_dir))
    except (ValueError, OSError, KeyError) as error:
        return [], f"No example images: the run's test images are not readable here ({error})."
    paths = [example.path for example in split.examples if os.path.isfile(example.path)][:count]
    if not paths:
        return [], f"No example images: the test split of {root} names no image file that is here."
    return paths, None


# ---------------------------------------------------------------- the page


def import_gradio():
    """Gradio, imported with its analytics and Hugging Face telemetry off (both read the environment)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        import gradio
    except ImportError:
        raise ImportError("the demo needs Gradio: pip install -e \".[demo]\" (or pip install gradio)") from None
    return gradio


def _header(model, run_dir, note):
    from captioner.models.captioner import describe_training

    trained = describe_training(model) or "The model does not record what it was trained on (an older run)."
    source = "recorded when it was trained" if model.decoding_recorded else "greedy: the model records none"
    lines = [f"# Captioner: {os.path.basename(os.path.normpath(run_dir)) if run_dir else model.name}",
             f"**{trained}.**" if not trained.endswith(".") else f"**{trained}**",
             f"Decoding starts from the model's default: {model.default_decoding.describe()} ({source}). Images "
             "are read as `python -m captioner.caption` reads files; one is captioned at a time, others wait."]
    if note:
        lines.append(f"_{note}_")
    return "\n\n".join(lines)


def build_app(model, examples=(), run_dir=None, note=None):
    """The demo page: an image (dropped, picked or an example) -> caption, n-best table, attention, timing.

    Args:
        model: a `Captioner`.
        examples: image paths offered as examples (`example_images`).
        run_dir: str or None, named in the title.
        note: str or None, shown under the title (why there are no examples).

    Returns:
        a `gradio.Blocks`, queued one request at a time. Its API (`gradio_client`): `/caption` takes the
        image and the decoding controls and returns `(caption, n-best table, attention gallery, timing or
        message)`: a file that cannot be captioned, or settings that do not go together, give an empty
        caption and the reason in the last.
    """
    gr = import_gradio()
    default = model.default_decoding
    longest = model.decoder.max_length

    def caption_upload(image, beam_size, alpha, num_captions, no_repeat_ngram_size, min_length, sample,
                       temperature, top_p, seed):
        # Inputs arrive unprocessed (`preprocess=False`): the upload's file, which only `read_image` opens.
        path = image.get("path") if isinstance(image, dict) else image
        if not path:
            return "", [], [], "Drop an image above, pick a file, or choose an example."
        try:
            decoding = page_decoding(model, beam_size, alpha, num_captions, no_repeat_ngram_size, min_length,
                                     sample, temperature, top_p, seed)
            caption, rows, attention, timing = describe(model, path, decoding)
        except NotCaptioned as error:
            return "", [], [], f"**Not captioned.** {error}"
        return caption, rows, attention, timing

    # Uploads and drawn maps are Gradio's temporary files: gone an hour later, and all of them when it stops.
    with gr.Blocks(title="captioner demo", analytics_enabled=False, delete_cache=CACHE_LIFETIME) as app:
        gr.Markdown(_header(model, run_dir, note))
        with gr.Row():
            with gr.Column(scale=1):
                image = gr.Image(label="Image: drop one here, or click to pick a file", type="filepath",
                                 image_mode=None, sources=["upload", "clipboard"], height=320)
                if examples:
                    gr.Examples([[path] for path in examples], inputs=[image], label="The run's test images",
                                examples_per_page=len(examples), elem_id="examples")
                with gr.Accordion("Decoding", open=True):
                    beam_size = gr.Slider(1, max(10, default.beam_size), value=default.beam_size, step=1,
                                          label="beam size (1: greedy)")
                    alpha = gr.Number(default.alpha, label="length penalty alpha (beam search)", minimum=0,
                                      step=0.1)
                    num_captions = gr.Slider(1, max(10, default.num_captions), value=default.num_captions, step=1,
                                             label="captions (n-best; at most the beam size, or samples)")
                    no_repeat = gr.Slider(0, 5, value=default.no_repeat_ngram_size, step=1,
                                          label="no repeated n-grams of this size (0: off)")
                    min_length = gr.Slider(0, longest, value=min(default.min_length, longest), step=1,
                                           label="at least this many words (0: no limit)")
                    sample = gr.Checkbox(default.sample, label="sample instead of searching (beam size 1)")
                    with gr.Row():
                        temperature = gr.Number(default.temperature, label="temperature", minimum=0.01, step=0.1)
                        top_p = gr.Number(default.top_p, label="top-p", minimum=0.01, maximum=1, step=0.05)
                        seed = gr.Textbox("" if default.seed is None else str(default.seed), label="seed",
                                          placeholder="blank: new samples each time")
                button = gr.Button("Caption", variant="primary")
            with gr.Column(scale=2):
                caption = gr.Textbox(label="Caption", lines=1, interactive=False, elem_id="caption")
                timing = gr.Markdown(label="timing", elem_id="timing")
                nbest = gr.Dataframe(headers=NBEST_HEADERS, datatype=["number", "str", "number", "number"],
                                     label="n-best", interactive=False, wrap=True, elem_id="nbest")
                gr.Markdown("The score is the caption's log-probability, length-normalised under a length "
                            "penalty (alpha above 0); the n-best are distinct captions of the beam, or samples.")
                attention = gr.Gallery(label="Attention, word by word", columns=5, height="auto",
                                       object_fit="contain", elem_id="attention")
        sample.change(None, [sample, beam_size], [beam_size], js="(on, beam) => on ? 1 : beam",
                      api_visibility="private")  # in the browser: sampling goes with a beam of 1
        gr.on([image.change, button.click], caption_upload,
              [image, beam_size, alpha, num_captions, no_repeat, min_length, sample, temperature, top_p, seed],
              [caption, nbest, attention, timing], api_name="caption", preprocess=False, concurrency_limit=1,
              concurrency_id="model", trigger_mode="always_last")
    app.queue(default_concurrency_limit=1, max_size=QUEUE_SIZE)
    return app


def launch(app, host=DEFAULT_HOST, port=DEFAULT_PORT):
    """Starts the app's server at `host:port` in the background, with nothing reaching beyond it (no share
    link, no analytics, no Node server, no monitoring page, no run history); returns its URL. `app.close()`
    stops it. Raises OSError when the port is taken."""
    app.launch(server_name=host, server_port=port, share=False, inbrowser=False, prevent_thread_lock=True,
               quiet=True, show_error=False, max_file_size=MAX_FILE_SIZE, enable_monitoring=False,
               ssr_mode=False, pwa=False, mcp_server=False, run_history=False, footer_links=["api", "settings"])
    return app.local_url


def load_app(run_dir, quiet=True):
    """`(app, examples, note)`: the run's model in a built app with its example images (`example_images`),
    its default decoding compiled already."""
    import captioner

    model = captioner.load(run_dir, quiet=quiet)
    examples, note = example_images(run_dir)
    warm_up(model)
    return build_app(model, examples, run_dir, note), examples, note


def warm_up(model):
    """Decodes a blank image with the model's default decoding, so the first visitor waits for no compiling."""
    size = model.image_size
    from captioner.data.pipeline import normalize_image

    model.generate(normalize_image(np.full((1, size, size, 3), 128, np.uint8), model.normalization).numpy(),
                   decoding=model.default_decoding)


def free_port(host=DEFAULT_HOST):
    """A port nobody listens on at `host` now."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


# ---------------------------------------------------------------- the screenshot


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")


def chromium_args(user_data_dir):
    """The flags Chromium runs with here: headless, and nothing of its own fetched (updates, sync, ...)."""
    return [*CHROMIUM_FLAGS, f"--user-data-dir={user_data_dir}"]


def open_browser(playwright, user_data_dir, executable=CHROMIUM):
    """Debian's Chromium driven by Playwright (no browser download): a persistent context in `user_data_dir`."""
    return playwright.chromium.launch_persistent_context(
        user_data_dir, executable_path=executable, headless=True, args=chromium_args(user_data_dir)[:-1],
        viewport={"width": 1360, "height": 900})


def caption_example(page, url, timeout=120_000):
    """Loads the demo at `url`, clicks its first example and waits for the caption and its attention maps.

    Returns:
        str, the caption the page shows.
    """
    page.goto(url, wait_until="networkidle", timeout=timeout)
    page.locator("#examples button.gallery-item").first.click(timeout=timeout)
    page.wait_for_function(  # the timing line and the maps come with the caption (which may be empty)
        "() => document.querySelector('#timing').innerText.includes(' s for ') "
        "&& document.querySelectorAll('#attention img').length > 0", timeout=timeout)
    page.wait_for_load_state("networkidle", timeout=timeout)
    return page.locator("#caption textarea, #caption input").first.input_value()


def screenshot(run_dir, path, executable=CHROMIUM):
    """Writes a PNG of the demo page of `run_dir` with its first example captioned and the attention maps shown.

        python -m captioner.demo runs/tiny-lstm --screenshot docs/images/demo.png

    Serves the app on a free port of 127.0.0.1 for the while, and drives headless Chromium (`executable`)
    with Playwright. Returns `path`.
    """
    import tempfile

    from playwright.sync_api import sync_playwright

    if not os.path.exists(executable):
        raise ValueError(f"no Chromium at {executable}: apt-get install -y chromium chromium-driver")
    app, examples, note = load_app(run_dir)
    if not examples:
        raise ValueError(f"{run_dir}: nothing to caption for the screenshot. {note}")
    url = launch(app, port=free_port())
    try:
        with tempfile.TemporaryDirectory(prefix="captioner-chromium-") as profile, sync_playwright() as playwright:
            browser = open_browser(playwright, profile, executable)
            try:
                page = browser.new_page()
                caption_example(page, url)
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
                page.screenshot(path=path, full_page=True)
            finally:
                browser.close()
    finally:
        app.close()
    return path
