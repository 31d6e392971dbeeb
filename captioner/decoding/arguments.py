"""The decoding flags the commands share (`caption`, `evaluate`, `export`): one definition, one check.

No TensorFlow is imported here, so `--help` and usage errors stay instant.
"""

import argparse

CONTROLS = ("num_captions", "min_length", "no_repeat_ngram_size", "repetition_penalty", "ban_words", "sample",
            "temperature", "top_k", "top_p", "seed", "beam_groups", "diversity_strength")


def _words(text):
    words = tuple(word.strip() for word in text.split(",") if word.strip())
    if not words:
        raise argparse.ArgumentTypeError(f"no words in {text!r}: give comma-separated words, e.g. red,blue")
    return words


def add_arguments(parser):
    """Adds the decoding flags (beam search, constraints, sampling, diverse beams) to an `argparse` parser."""
    group = parser.add_argument_group(
        "decoding (default: the model's own, chosen on validation data when it was trained; flags change it)")
    group.add_argument("--beam-size", type=int, default=None, help="beam size K; 1 is greedy")
    group.add_argument("--alpha", type=float, default=None,
                       help="length penalty exponent of beam search, >= 0 (default: the model's recorded alpha "
                            "when the beam size is its recorded one, else 0)")
    group.add_argument("--max-length", type=int, default=None, help="most words a caption (default: the model's)")
    group.add_argument("--num-captions", type=int, default=None, metavar="N",
                       help="the N best distinct captions of the beam (N <= beam size), or N samples, each with "
                            "its score (default: 1)")
    group.add_argument("--min-length", type=int, default=None, metavar="N",
                       help="no end before N words (default: the model's recorded decoding's, else 0, no limit)")
    group.add_argument("--no-repeat-ngram-size", type=int, default=None, metavar="N",
                       help="no n-gram of N words twice in a caption (default: the model's recorded decoding's, "
                            "else 0, off)")
    group.add_argument("--repetition-penalty", type=float, default=None, metavar="R",
                       help="CTRL's penalty, >= 1, on words already in the caption (default: the model's recorded "
                            "decoding's, else 1, off)")
    group.add_argument("--ban-words", type=_words, default=None, metavar="W1,W2",
                       help="words never generated (each must be in the model's vocabulary)")
    group.add_argument("--sample", action="store_true", default=None,
                       help="draw each word from the model's distribution instead of searching")
    group.add_argument("--temperature", type=float, default=None, help="sampling temperature, > 0 (default: 1)")
    group.add_argument("--top-k", type=int, default=None, metavar="K",
                       help="sample among the K most likely words (default: 0, all)")
    group.add_argument("--top-p", type=float, default=None, metavar="P",
                       help="sample among the fewest words holding probability P, in (0, 1] (default: 1)")
    group.add_argument("--seed", type=int, default=None, help="repeat the same samples for the same images and batch")
    group.add_argument("--beam-groups", type=int, default=None, metavar="G",
                       help="diverse beam search: G groups of beam-size / G beams (default: 1, plain beam search)")
    group.add_argument("--diversity-strength", type=float, default=None, metavar="L",
                       help="how much a group avoids words earlier groups chose at the same step (with "
                            "--beam-groups; default 0.5 with them)")
    return group


def controls(args):
    """The decoding fields given on the command line (for `Captioner.decoding_settings`), None ones left out."""
    return {name: getattr(args, name) for name in CONTROLS if getattr(args, name, None) is not None}


def check(parser, args):
    """Refuses impossible values with a usage error (exit status 2), before a model is loaded.

    What does not go together given the model's own decoding is checked when it is known
    (`Captioner.decoding_settings`), also as a usage error.
    """
    limits = [("--beam-size", args.beam_size, 1), ("--max-length", args.max_length, 1),
              ("--num-captions", args.num_captions, 1), ("--beam-groups", args.beam_groups, 1),
              ("--min-length", args.min_length, 0), ("--no-repeat-ngram-size", args.no_repeat_ngram_size, 0),
              ("--top-k", args.top_k, 0)]
    for flag, value, least in limits:
        if value is not None and value < least:
            parser.error(f"{flag} must be at least {least}, got {value}")
    if args.alpha is not None and args.alpha < 0:
        parser.error("--alpha must be 0 or more")
    if args.repetition_penalty is not None and args.repetition_penalty < 1:
        parser.error(f"--repetition-penalty must be 1 (off) or more, got {args.repetition_penalty:g}")
    if args.temperature is not None and args.temperature <= 0:
        parser.error(f"--temperature must be above 0, got {args.temperature:g}")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        parser.error(f"--top-p must be in (0, 1], got {args.top_p:g}")
    if args.diversity_strength is not None and args.diversity_strength < 0:
        parser.error(f"--diversity-strength must be 0 or more, got {args.diversity_strength:g}")
    if args.min_length is not None and args.max_length is not None and args.min_length > args.max_length:
        parser.error(f"--min-length {args.min_length} is above --max-length {args.max_length}")
    sampling = [f for f in ("temperature", "top_k", "top_p", "seed") if getattr(args, f) is not None]
    if sampling and not args.sample:
        parser.error(f"{', '.join('--' + f.replace('_', '-') for f in sampling)} go with --sample")
    if args.sample and (args.beam_size not in (None, 1) or args.beam_groups not in (None, 1)):
        parser.error("--sample draws captions one word at a time: it does not go with --beam-size or --beam-groups")
    if args.diversity_strength and args.beam_groups in (None, 1):
        parser.error("--diversity-strength goes with --beam-groups (2 or more)")
    if args.beam_groups and args.beam_size and args.beam_size % args.beam_groups:
        parser.error(f"--beam-groups {args.beam_groups} must divide --beam-size {args.beam_size}")
    if args.num_captions and args.beam_size and not args.sample and args.num_captions > args.beam_size:
        parser.error(f"--num-captions {args.num_captions} is above --beam-size {args.beam_size}: a beam holds "
                     "as many captions as its size")


def settings(parser, model, args):
    """`(decoding, source)`: the `Decoding` of the model's default changed by the flags, and where it came from.

    A combination that does not go together (given the model's own decoding) is a usage error.
    """
    given = controls(args)
    try:
        decoding = model.decoding_settings(args.beam_size, args.alpha, **given)
        from captioner.decoding.decode import banned_ids

        banned_ids(model.tokenizer, decoding.ban_words)
        from captioner.models.captioner import check_decoding

        check_decoding(model.decoder, model.decoder.max_length if args.max_length is None else args.max_length,
                       decoding)
    except ValueError as error:
        parser.error(str(error))
    return decoding, model.decoding_source(args.beam_size, args.alpha, **given)
