"""The web demo (`python -m captioner.demo`): served on localhost and driven by gradio_client and a real browser.

The app runs in this process on a free port of 127.0.0.1, with every socket connection beyond the loopback
refused and recorded (the server's and the client's: analytics, version checks, CDNs); the tests check
that none was tried. The browser test drives Debian's headless Chromium through Playwright and records
every request the page makes.
"""

import errno
import importlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import types
import urllib.request
from urllib.parse import urlparse

import numpy as np
import pytest
from PIL import Image

from captioner import caption as caption_command
from conftest import exit_status, skip_or_fail


def needed(request, module, what):
    """`module`, imported; missing, it skips the test in the fast tier and fails it under --run-slow (as CI
    runs the suite: a machine without the demo's dependencies must not pass by skipping)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        skip_or_fail(request, f"the demo tests need {what}: pip install -e \".[dev]\"")


def loopback(address):
    try:
        return ipaddress.ip_address(address[0].split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(scope="session")
def gradio_installed(request, tmp_path_factory):
    """Gradio and its client, checked before the run they would serve is trained; their temporary files
    (uploads, outputs, downloads, which both place when imported) in the session's folder."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio")))
        needed(request, "gradio", "Gradio")
        needed(request, "gradio_client", "gradio_client")
        yield


@pytest.fixture(scope="module")
def served(gradio_installed, quick_run, tmp_path_factory):
    """The demo of `quick_run` served on 127.0.0.1 in this process, a gradio_client `Client` of it, and the
    connections beyond the loopback that anything in the process tried meanwhile (refused)."""
    outside = []
    original_connect, original_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def guarded(original):
        def connect(sock, address):
            if sock.family in (socket.AF_INET, socket.AF_INET6) and not loopback(address):
                outside.append(address)
                raise OSError(errno.ENETUNREACH, f"test_demo: no connection beyond 127.0.0.1 ({address})")
            return original(sock, address)
        return connect

    with pytest.MonkeyPatch.context() as patch:
        # gradio_client leaves an empty folder in the temporary directory per file it downloads: here, in ours.
        patch.setattr(tempfile, "tempdir", str(tmp_path_factory.mktemp("tmp")))
        patch.setattr(socket.socket, "connect", guarded(original_connect))
        patch.setattr(socket.socket, "connect_ex", guarded(original_connect_ex))
        import captioner
        from captioner.inference import demo
        from gradio_client import Client

        model = captioner.load(quick_run, quiet=True)
        examples, note = demo.example_images(quick_run)
        demo.warm_up(model)
        app = demo.build_app(model, examples, quick_run, note)
        url = demo.launch(app, port=demo.free_port())
        downloads = str(tmp_path_factory.mktemp("downloads"))
        try:
            yield types.SimpleNamespace(url=url, app=app, model=model, examples=examples, outside=outside,
                                        client=Client(url, verbose=False, download_files=downloads),
                                        run_dir=quick_run)
        finally:
            app.close()


def page(served, image, **settings):
    """The demo's `/caption` for an image file: `(caption, n-best rows, attention gallery, timing or message)`.
    Settings not given are the page's starting values (the model's recorded default)."""
    from gradio_client import handle_file

    caption, table, gallery, timing = served.client.predict(handle_file(str(image)), **settings,
                                                            api_name="/caption")
    return caption, table["data"], gallery, timing


def command(served, image, tmp_path, *flags):
    """`python -m captioner.caption RUN IMAGE -o out.jsonl FLAGS` (in this process): its one record."""
    output = tmp_path / f"captions-{len(list(tmp_path.glob('captions-*')))}.jsonl"
    assert exit_status(caption_command.main, [served.run_dir, str(image), "-o", str(output), "--quiet",
                                              *flags]) == 0
    (record,) = [json.loads(line) for line in output.read_text().splitlines()]
    return record


def test_page_captions_as_the_caption_command(served, tmp_path):
    assert served.url.startswith("http://127.0.0.1:")
    assert len(served.examples) == 8
    # An RGBA PNG: the upload is read as the command reads files (transparency onto white).
    rgba = tmp_path / "transparent.png"
    pixels = np.asarray(Image.open(served.examples[2]).convert("RGBA")).copy()
    pixels[:20, :20, 3] = 0
    Image.fromarray(pixels).save(rgba)

    shown, rows, gallery, timing = page(served, rgba)
    record = command(served, rgba, tmp_path)
    assert shown == record["caption"]
    assert [row[1] for row in rows] == [shown] and rows[0][2] == pytest.approx(record["score"], abs=1e-3)
    # A map per word, and the end token's (unless the caption ran to the longest).
    labels = [f"{i}. {w}" for i, w in enumerate(shown.split() + ["<end>"], 1)]
    assert [item["caption"] for item in gallery] == labels[:len(gallery)] and len(gallery) >= len(labels) - 1 >= 0
    assert gallery
    assert all(os.path.isfile(item["image"]) for item in gallery)
    assert served.model.default_decoding.describe() in timing

    # Beam search with an n-best list and constraints, changed on the page.
    shown, rows, gallery, timing = page(served, served.examples[0], beam_size=3, alpha=0.5, num_captions=2,
                                        no_repeat_ngram_size=2, min_length=2)
    record = command(served, served.examples[0], tmp_path, "--beam-size", "3", "--alpha", "0.5",
                     "--num-captions", "2", "--no-repeat-ngram-size", "2", "--min-length", "2")
    assert shown == record["caption"]
    assert [row[1] for row in rows] == [entry["caption"] for entry in record["captions"]]
    assert [row[2] for row in rows] == pytest.approx([entry["score"] for entry in record["captions"]], abs=1e-3)
    assert "beam 3, length penalty alpha 0.5, 2 captions an image" in timing

    # Sampling with a seed repeats exactly.
    shown, rows, _, timing = page(served, served.examples[1], beam_size=1, sample=True, temperature=0.8, top_p=0.9,
                                  seed="7")
    record = command(served, served.examples[1], tmp_path, "--sample", "--temperature", "0.8", "--top-p", "0.9",
                     "--seed", "7")
    assert shown == record["caption"] and "sampling at temperature 0.8, top-p 0.9, seed 7" in timing
    assert not served.outside


def test_refuses_what_is_not_an_image_and_keeps_serving(served, tmp_path):
    notes = tmp_path / "notes.png"
    notes.write_text("this is not an image\n")
    shown, rows, gallery, message = page(served, notes)
    assert (shown, rows, gallery) == ("", [], [])
    assert message.startswith("**Not captioned.**") and "notes.png: not an image, or its header is corrupt" in message
    assert "Traceback" not in message

    huge = tmp_path / "huge.png"
    Image.new("1", (12000, 12000)).save(huge)  # a small file of 144 megapixels
    shown, _, _, message = page(served, huge)
    assert shown == "" and "image too large (12000 x 12000 pixels, limit 100000000)" in message

    shown, _, _, message = page(served, served.examples[0], beam_size=1, num_captions=3)
    assert shown == "" and "do not go together" in message and "3 captions need a beam of at least 3" in message
    shown, _, _, message = page(served, served.examples[0], beam_size=1, sample=True, seed="one")
    assert shown == "" and "The seed must be a number" in message

    shown, rows, gallery, timing = page(served, served.examples[0])  # still serving
    assert rows[0][1] == shown and gallery and f" s for {os.path.basename(served.examples[0])}" in timing
    assert not served.outside


def test_requests_wait_their_turn(served, monkeypatch):
    """Concurrent requests are queued and decoded one at a time."""
    from gradio_client import handle_file

    generate, running, most = served.model.generate, [0], [0]
    lock = threading.Lock()

    def counted(*args, **kwargs):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            time.sleep(0.3)
            return generate(*args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(served.model, "generate", counted)
    jobs = [served.client.submit(handle_file(path), api_name="/caption") for path in served.examples[:3]]
    results = [job.result(timeout=120) for job in jobs]
    assert all(" s for " in timing for *_, timing in results) and most[0] == 1


def test_examples_need_the_runs_data(served, tmp_path):
    from captioner.inference import demo

    moved = tmp_path / "moved-run"
    shutil.copytree(served.run_dir, moved, ignore=shutil.ignore_patterns("logs", "checkpoints"))
    config = json.loads((moved / "config.json").read_text())
    config["data_root"] = str(tmp_path / "gone")
    (moved / "config.json").write_text(json.dumps(config))
    examples, note = demo.example_images(str(moved))
    assert examples == [] and note.startswith("No example images") and "gone" in note
    app = demo.build_app(served.model, examples, str(moved), note)
    assert note in json.dumps(app.config)


def test_transformer_attention_word_by_word(small_shapes):
    """The page's captioning is a plain function; the Transformer's attention comes as the LSTM's does."""
    from captioner import config as config_lib
    from captioner.data import coco
    from captioner.inference import demo
    from captioner.models.captioner import build_captioner

    config = config_lib.preset("tiny", decoder="transformer", data_root=small_shapes, max_length=6)
    model = build_captioner(config, ["a", "red", "blue", "square", "circle"])  # untrained: any words will do
    path = coco.read_split(small_shapes, "test").examples[0].path
    caption, rows, attention, timing = demo.describe(model, path, demo.page_decoding(model, min_length=3))
    words = caption.split()
    assert len(words) >= 3 and rows[0][1] == caption
    # One map per step: each word's, and the end token's unless the caption ran to the last step (7: 6 words
    # and the end).
    assert [label for _, label in attention] == [f"{i}. {w}" for i, w in enumerate(words + ["<end>"], 1)][:7]
    assert all(image.shape == (demo.PANEL_SIDE, demo.PANEL_SIDE, 3) and image.dtype == np.uint8
               for image, _ in attention)
    assert timing.startswith("greedy, at least 3 words: ")
    with pytest.raises(demo.NotCaptioned, match="do not go together: .*top-p"):
        demo.page_decoding(model, sample=True, top_p=1.5)


def test_command_line_usage_errors(tmp_path, capsys):
    from captioner import demo as demo_command

    assert exit_status(demo_command.main, [str(tmp_path / "nowhere")]) == 2
    assert "no run folder" in capsys.readouterr().err
    assert exit_status(demo_command.main, [str(tmp_path), "--port", "0"]) == 2


@pytest.mark.slow
def test_page_in_a_browser_fetches_nothing_from_outside(served, request, tmp_path):
    """Headless Chromium loads the page, clicks an example and finds its caption; every request the page
    made (scripts, styles, fonts, images, the queue) went to the app on 127.0.0.1."""
    from captioner.inference import demo

    sync_api = needed(request, "playwright.sync_api", "Playwright (the Python package; Chromium is Debian's)")
    if not os.path.exists(demo.CHROMIUM):
        skip_or_fail(request, f"no Chromium at {demo.CHROMIUM}: apt-get install -y chromium chromium-driver")
    requests = []
    with sync_api.sync_playwright() as playwright:
        browser = demo.open_browser(playwright, str(tmp_path / "chromium-profile"))
        try:
            browser.on("request", lambda r: requests.append(r.url))
            tab = browser.new_page()
            shown = demo.caption_example(tab, served.url)
            text = tab.inner_text("body")
        finally:
            browser.close()
    assert shown == demo.describe(served.model, served.examples[0]).caption
    assert "Model trained on shapes" in text and "<end>" in text  # what it learned from; the last attention map
    outside = [url for url in requests if urlparse(url).scheme not in ("data", "blob")
               and urlparse(url).hostname != "127.0.0.1"]
    assert requests and not outside
    assert any("/static/fonts/" in url for url in requests)  # the fonts came from the app itself
    assert not served.outside


@pytest.mark.slow
def test_command_serves_on_localhost_until_interrupted(gradio_installed, quick_run, tmp_path):
    from captioner.inference.demo import free_port

    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "captioner.demo", quick_run, "--port", str(port)],
                               stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, GRADIO_TEMP_DIR=str(tmp_path / "gradio")))
    try:
        lines = []
        deadline = time.time() + 180
        while time.time() < deadline and not any("Serving" in line for line in lines):
            line = process.stderr.readline()
            if not line:
                break
            lines.append(line)
        assert any(f"at http://127.0.0.1:{port}/" in line for line in lines), "".join(lines)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as response:
            assert response.status == 200 and b"gradio" in response.read().lower()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
