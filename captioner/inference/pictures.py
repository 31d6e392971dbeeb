"""The README's pictures, made again from a run with one command when the model changes.

    python -m captioner.inference.pictures RUN_DIR docs/images [--image 0] [--skip-demo]

writes `attention.png` (the run's decoding default on a test image, each word
over the image with its attention: `figures.attention_figure`, as notebook 03
and the report draw it), `learning_curves.png` (its `log.csv`, as the report
draws it), and, with Chromium and the `demo` extra (`--skip-demo` leaves them),
`demo.png` (a screenshot of `python -m captioner.demo` on a test image) and
`report.png` (the first screen of the run's report, `RUN_DIR/report.html`,
written by `python -m captioner.report` first if it is not there).
"""

import argparse
import csv
import os
import sys

from captioner import console


def make(run_dir, folder, image=0, demo=True):
    """Writes the pictures of `run_dir` into `folder`; returns their paths."""
    import numpy as np
    from PIL import Image

    import captioner
    from captioner import runs
    from captioner.data import datasets
    from captioner.evaluation import scoring
    from captioner.inference import figures

    os.makedirs(folder, exist_ok=True)
    model = captioner.load(run_dir)
    config = runs.load_config(run_dir)
    split = datasets.read_split(config.dataset, datasets.existing_data_root(config), "test", config.karpathy_json,
                                config.skip_missing_images)
    example = split.examples[image]
    output = scoring.caption_examples(model, [example], 1, with_attention=True, progress=False)[0]
    pixels = np.asarray(Image.open(example.path).convert("RGB"))
    written = [os.path.join(folder, "attention.png")]
    figures.attention_figure(pixels, output["caption"], output["attention"], model.encoder.grid_shape).savefig(
        written[-1], dpi=80)
    with open(os.path.join(run_dir, "log.csv"), newline="") as handle:
        rows = list(csv.DictReader(handle))
    written.append(os.path.join(folder, "learning_curves.png"))
    figures.learning_curves(rows).savefig(written[-1], dpi=80)
    if demo:
        from captioner.inference import demo as demo_lib

        written.append(os.path.join(folder, "demo.png"))
        demo_lib.screenshot(run_dir, written[-1])
        written.append(os.path.join(folder, "report.png"))
        report_screenshot(run_dir, written[-1])
    return written


def report_screenshot(run_dir, path, executable=None):
    """Writes a PNG of the first screen (1360 x 900) of `run_dir`'s report, making the report if needed."""
    import tempfile

    from playwright.sync_api import sync_playwright

    from captioner.inference import demo as demo_lib
    from captioner.inference import report

    page_path = os.path.join(run_dir, "report.html")
    if not os.path.exists(page_path):
        report.write_report(run_dir, page_path)
    executable = executable or demo_lib.CHROMIUM
    if not os.path.exists(executable):
        raise ValueError(f"no Chromium at {executable}: apt-get install -y chromium chromium-driver")
    with tempfile.TemporaryDirectory(prefix="captioner-chromium-") as profile, sync_playwright() as playwright:
        browser = demo_lib.open_browser(playwright, profile, executable)
        try:
            page = browser.new_page()
            page.goto("file://" + os.path.abspath(page_path), wait_until="load")
            page.screenshot(path=path)
        finally:
            browser.close()
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m captioner.inference.pictures", description=__doc__.split("\n\n")[0],
                                     formatter_class=console.HelpFormatter)
    parser.add_argument("run_dir", help="a run folder of python -m captioner.train")
    parser.add_argument("folder", help="where to write the pictures (docs/images in the repository)")
    parser.add_argument("--image", type=int, default=0, help="which test image (its position in the split)")
    parser.add_argument("--skip-demo", action="store_true", help="do not take the demo's screenshot")
    args = parser.parse_args(argv)
    from captioner import runs

    problem = runs.problem_with(args.run_dir)
    if problem:
        parser.error(problem)
    console.quiet_tensorflow()
    for path in make(args.run_dir, args.folder, args.image, not args.skip_demo):
        print(f"Written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
