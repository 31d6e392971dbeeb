"""`python -m captioner` (and the `captioner` command): the commands, and one way in to each.

    captioner train ...      python -m captioner.train ...
    captioner caption ...    python -m captioner.caption ...
    captioner evaluate ...   python -m captioner.evaluate ...
    captioner export ...     python -m captioner.export ...
    captioner check ...      python -m captioner.data.check ...
    captioner report ...     python -m captioner.report ...
    captioner demo ...       python -m captioner.demo ...
"""

import difflib
import importlib
import sys

COMMANDS = {  # name: (module, what it does)
    "check": ("captioner.data.check", "check a dataset before training: splits, skipped rows, broken images"),
    "train": ("captioner.train", "train a model (no arguments: the default model on the built-in Shapes data)"),
    "caption": ("captioner.caption", "caption a folder of images, or one image, with a trained model or an export"),
    "evaluate": ("captioner.evaluate", "score a trained model, or a results file, with the COCO caption metrics"),
    "report": ("captioner.report", "write a run's report: one HTML page of its metrics and example captions"),
    "demo": ("captioner.demo", "try a model in a web page on this machine (needs pip install -e \".[demo]\")"),
    "export": ("captioner.export", "write a trained model for serving: a SavedModel, a LiteRT (.tflite) or an ONNX file"),
}


def usage():
    lines = ["usage: captioner COMMAND [ARGUMENTS]   (or python -m MODULE [ARGUMENTS])", "", "commands:"]
    lines += [f"  {name:<10} {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "captioner COMMAND --help describes a command's arguments."]
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from captioner import __version__

        print(f"captioner {__version__}")
        return 0
    if argv[0] not in COMMANDS:
        close = difflib.get_close_matches(argv[0], COMMANDS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        print(f"{usage()}\n\ncaptioner: unknown command {argv[0]!r}{hint}", file=sys.stderr)
        return 2
    command = importlib.import_module(COMMANDS[argv[0]][0])
    sys.argv[0] = f"captioner {argv[0]}"
    return command.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
