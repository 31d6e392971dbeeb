"""How to decode: one value for every strategy and constraint, checked once, described once.

A `Decoding` is what the commands' flags, the Python API, a model's recorded
default and the decoding-default search all pass around. It is frozen and
hashable, so one pass over the images can decode with several (`captioner.
evaluation.scoring.caption_settings`), and it names itself (`describe`).
"""

import dataclasses
import math
import hashlib
import typing


@dataclasses.dataclass(frozen=True)
class Decoding:
    """Decoding settings.

    Args:
        beam_size: int, K; 1 is greedy search (or sampling with `sample`).
        alpha: float >= 0, GNMT length penalty exponent of beam search (0: none).
        num_captions: int, N captions returned per image: the N best distinct captions of the beam (N <= K),
            or N independent samples.
        min_length: int, words before the end token may come (0: no limit).
        no_repeat_ngram_size: int, no n-gram twice in a caption (0: off).
        repetition_penalty: float >= 1, CTRL's penalty on words already in the caption (1: off).
        ban_words: tuple of str, words never generated.
        sample: bool, draw words from the model's distribution instead of searching.
        temperature: float > 0, sampling temperature.
        top_k: int, sample from the k most likely words only (0: all).
        top_p: float in (0, 1], sample from the smallest set of words holding this much probability.
        seed: int or None, makes sampling repeat exactly for the same images and batch.
        beam_groups: int, G: diverse beam search in G groups of K / G beams (1: plain beam search).
        diversity_strength: float >= 0, lambda of the groups' Hamming diversity.
    """

    beam_size: int = 1
    alpha: float = 0.0
    num_captions: int = 1
    min_length: int = 0
    no_repeat_ngram_size: int = 0
    repetition_penalty: float = 1.0
    ban_words: typing.Tuple[str, ...] = ()
    sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: typing.Optional[int] = None
    beam_groups: int = 1
    diversity_strength: float = 0.0

    def __post_init__(self):
        # Normalised, so that equal settings are equal values (and hash alike) however they were given.
        for name, kind in (("beam_size", int), ("num_captions", int), ("min_length", int),
                           ("no_repeat_ngram_size", int), ("top_k", int), ("beam_groups", int),
                           ("alpha", float), ("repetition_penalty", float), ("temperature", float),
                           ("top_p", float), ("diversity_strength", float)):
            object.__setattr__(self, name, kind(getattr(self, name)))
        object.__setattr__(self, "ban_words", tuple(self.ban_words))
        if self.beam_size == 1 and not self.sample and self.alpha >= 0:  # a negative one is refused by validated
            object.__setattr__(self, "alpha", 0.0)  # greedy decoding has no length penalty

    def validated(self, max_length=None):
        """The settings, or ValueError with one line saying what does not go together."""
        problems = []
        not_finite = [name for name in ("alpha", "repetition_penalty", "temperature", "top_p", "diversity_strength")
                      if not math.isfinite(getattr(self, name))]
        if not_finite:
            raise ValueError(f"{', '.join('--' + n.replace('_', '-') for n in not_finite)} must be a finite number")
        if self.beam_size < 1:
            problems.append(f"the beam size must be at least 1, got {self.beam_size}")
        if self.alpha < 0:
            problems.append(f"the length penalty alpha must be 0 or more, got {self.alpha:g}")
        if self.num_captions < 1:
            problems.append(f"the number of captions must be at least 1, got {self.num_captions}")
        if not self.sample and self.num_captions > self.beam_size:
            problems.append(f"{self.num_captions} captions need a beam of at least {self.num_captions} "
                            f"(--beam-size), got {self.beam_size}; or --sample draws any number")
        if self.min_length < 0 or self.no_repeat_ngram_size < 0:
            problems.append("--min-length and --no-repeat-ngram-size must be 0 or more")
        if max_length is not None and self.min_length > max_length:
            problems.append(f"--min-length {self.min_length} is above the longest caption, {max_length} words")
        if self.repetition_penalty < 1:
            problems.append(f"the repetition penalty must be 1 (off) or more, got {self.repetition_penalty:g}")
        if self.sample:
            if self.beam_size > 1 or self.beam_groups > 1:
                problems.append("--sample draws captions one word at a time: it does not go with --beam-size "
                                "or --beam-groups")
            if self.temperature <= 0:
                problems.append(f"the temperature must be above 0, got {self.temperature:g}")
            if self.top_k < 0:
                problems.append(f"--top-k must be 0 (all words) or more, got {self.top_k}")
            if not 0 < self.top_p <= 1:
                problems.append(f"--top-p must be in (0, 1], got {self.top_p:g}")
        elif self.temperature != 1 or self.top_k or self.top_p != 1 or self.seed is not None:
            problems.append("--temperature, --top-k, --top-p and --seed go with --sample")
        if self.beam_groups < 1:
            problems.append(f"--beam-groups must be at least 1, got {self.beam_groups}")
        elif self.beam_size % self.beam_groups:
            problems.append(f"--beam-groups {self.beam_groups} must divide the beam size {self.beam_size}")
        if self.diversity_strength < 0:
            problems.append(f"--diversity-strength must be 0 or more, got {self.diversity_strength:g}")
        elif self.diversity_strength and self.beam_groups == 1:
            problems.append("--diversity-strength goes with --beam-groups (2 or more)")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def constrained(self):
        """Whether any constraint reshapes the steps' distribution."""
        return bool(self.min_length or self.no_repeat_ngram_size or self.repetition_penalty != 1 or self.ban_words)

    def to_json(self):
        """The settings that differ from plain greedy decoding (what a model records, `decoding.json` holds)."""
        default = Decoding()
        return {f.name: (list(v) if isinstance(v, tuple) else v) for f in dataclasses.fields(self)
                if (v := getattr(self, f.name)) != getattr(default, f.name)}

    @classmethod
    def from_json(cls, payload):
        """A `Decoding` from `to_json`'s dict (unknown keys refused)."""
        payload = dict(payload or {})
        unknown = set(payload) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown decoding settings {sorted(unknown)}")
        return cls(**payload)

    def describe(self):
        """The settings as a person reads them: "beam 3, length penalty alpha 0.6, no repeated 3-grams"."""
        if self.sample:
            parts = [f"sampling at temperature {self.temperature:g}"]
            parts += [f"top-k {self.top_k}"] if self.top_k else []
            parts += [f"top-p {self.top_p:g}"] if self.top_p < 1 else []
            parts += [f"seed {self.seed}"] if self.seed is not None else []
        elif self.beam_size == 1:
            parts = ["greedy"]
        else:
            parts = [f"beam {self.beam_size}, length penalty alpha {self.alpha:g}"]
            if self.beam_groups > 1:
                parts.append(f"{self.beam_groups} diverse groups (strength {self.diversity_strength:g})")
        if self.num_captions > 1:
            parts.append(f"{self.num_captions} captions an image")
        if self.min_length:
            parts.append(f"at least {self.min_length} words")
        if self.no_repeat_ngram_size:
            parts.append(f"no repeated {self.no_repeat_ngram_size}-grams")
        if self.repetition_penalty != 1:
            parts.append(f"repetition penalty {self.repetition_penalty:g}")
        if self.ban_words:
            parts.append(f"never {', '.join(self.ban_words)}")
        return ", ".join(parts)

    def label(self):
        """A short name for folders, different for different settings: "greedy", "beam3-alpha0.6",
        "sample-t0.8-p0.9-seed7", "beam4-groups2-div0.5-norepeat3-ban3f2a1c" (a hash of the banned words)."""
        if self.sample:
            name = f"sample-t{self.temperature:g}" + (f"-k{self.top_k}" if self.top_k else "") + (
                f"-p{self.top_p:g}" if self.top_p < 1 else "") + ("" if self.seed is None else f"-seed{self.seed}")
        elif self.beam_size == 1:
            name = "greedy"
        else:
            name = f"beam{self.beam_size}" + (f"-alpha{self.alpha:g}" if self.alpha else "") + (
                f"-groups{self.beam_groups}-div{self.diversity_strength:g}" if self.beam_groups > 1 else "")
        name += f"-n{self.num_captions}" if self.num_captions > 1 else ""
        name += f"-min{self.min_length}" if self.min_length else ""
        name += f"-norepeat{self.no_repeat_ngram_size}" if self.no_repeat_ngram_size else ""
        name += f"-rep{self.repetition_penalty:g}" if self.repetition_penalty != 1 else ""
        if self.ban_words:
            words = ",".join(sorted(set(self.ban_words))).encode("utf-8")
            name += "-ban" + hashlib.sha1(words).hexdigest()[:6]
        return name


GREEDY = Decoding()
