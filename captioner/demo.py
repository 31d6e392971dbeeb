"""A web page to try a trained model on your own images: caption, n-best, attention word by word, timing.

    python -m captioner.demo RUN_DIR [--host 127.0.0.1] [--port 7860]
    python -m captioner.demo RUN_DIR --screenshot docs/images/demo.png

Serves a Gradio app (`pip install -e ".[demo]"`) on 127.0.0.1 unless --host says otherwise: drop or pick an
image, or choose one of the run's test images, and see its caption, the n-best list with scores, the
attention map of each word, what the model was trained on, and how long it took; the decoding settings
(beam size, length penalty, n-best, constraints, sampling) start from the model's recorded default and can
be changed on the page. Images are read as `python -m captioner.caption` reads files, one at a time.
Nothing is fetched from the internet. The code is `captioner/inference/demo.py`; docs/demo.md says more.
"""

import argparse
import signal
import sys
import time

from captioner import console
from captioner.console import HelpFormatter


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m captioner.demo", description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("run_dir", help="a run folder of python -m captioner.train")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (0.0.0.0: every interface, so other machines can reach it)")
    parser.add_argument("--port", type=int, default=7860, help="port to listen on")
    parser.add_argument("--screenshot", metavar="PNG",
                        help="instead of serving: write a PNG of the page with the first test image captioned "
                             "(needs Playwright and Debian's chromium)")
    parser.add_argument("--quiet", action="store_true", help="no notes on stderr")
    parser.add_argument("--verbose", action="store_true", help="also TensorFlow's own log lines")
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        parser.error(f"--port must be in 1-65535, got {args.port}")
    from captioner import runs

    problem = runs.problem_with(args.run_dir)
    if problem:
        parser.error(problem)
    try:
        from captioner.inference import demo
        demo.import_gradio()
    except ImportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    console.quiet_tensorflow(args.verbose)
    note = (lambda line: None) if args.quiet else console.log
    if args.screenshot:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            print("error: --screenshot needs Playwright: pip install playwright (it drives Debian's chromium: "
                  "apt-get install -y chromium)", file=sys.stderr)
            return 2
        try:
            note(f"Wrote {demo.screenshot(args.run_dir, args.screenshot)}")
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        return 0
    app, examples, missing = demo.load_app(args.run_dir, quiet=args.quiet)
    note(missing or f"{len(examples)} example images from the run's test split")
    try:
        url = demo.launch(app, args.host, args.port)
    except OSError as error:
        print(f"error: cannot listen on {args.host}:{args.port} ({error}); choose another --port", file=sys.stderr)
        return 1
    note(f"Serving the demo of {args.run_dir} at {url} (Ctrl-C stops it)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a service manager's stop: close as Ctrl-C does
    try:
        while app.is_running:
            time.sleep(0.5)
    except KeyboardInterrupt:
        note("Stopped")
    finally:
        app.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
