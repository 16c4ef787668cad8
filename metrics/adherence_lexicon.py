"""The caption lexicon of per-aspect adherence: which caption words state which concept, and which tag of the
real taggers (musicnn MTT and MSD, ``metrics.embedders.musicnn``) hears it.

Why a hand-written lexicon: MusicCaps' ``aspect_list`` is free text written by musicians ("soft female
vocal", "mellow piano melody", "no voice"), and the taggers' 50 labels each are last.fm / MagnaTagATune
tags. A concept joins the two: its patterns (whole words, case-insensitive) find it in an aspect or a
caption clause, and its ``mtt`` / ``msd`` entries name the tag that scores it (None where that tagger has no
such label). The choices, and the words of the MusicCaps file each concept was checked against, are in
docs/protocol.md ("Per-aspect caption adherence").

Negation: a match is a statement only when no negating word (``no``, ``not``, ``without``, ``non``, ``never``,
``lack``) comes before it in the same aspect or caption clause ("There are no drums.", "no voice"); the
``instrumental`` concept's own patterns are negations of voice and are never negated themselves. A
concept's positives are the clips that state it; every other clip is a negative (the AUC asks whether the
tag ranks the clips that asked for the concept above those that did not).

Not covered by any tag: keys and BPM numbers (estimators, not taggers), waltz / march / lullaby, bass, organ,
bells, dynamics words other than loud / soft. ``ASPECTS`` lists the aspect names in report order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Concept:
    """One thing a caption can ask for, the aspect it belongs to, and the tag of each tagger that hears it."""

    name: str
    aspect: str
    mtt: str | None
    msd: str | None
    patterns: tuple[str, ...]
    negatable: bool = True
    regex: re.Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        alternatives = "|".join(p if p.startswith("(?") or "\\" in p else re.escape(p).replace(r"\ ", r"[\s-]+")
                                for p in self.patterns)
        object.__setattr__(self, "regex", re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w-])", re.I))

    def tag(self, tagger: str) -> str | None:
        """The label of ``tagger`` (``musicnn-mtt`` or ``musicnn-msd``) that scores this concept."""
        return {"musicnn-mtt": self.mtt, "musicnn-msd": self.msd}.get(tagger)


def _c(name: str, aspect: str, mtt: str | None, msd: str | None, *patterns: str, negatable: bool = True) -> Concept:
    return Concept(name, aspect, mtt, msd, patterns or (name,), negatable)


NOT_DRUMS = r"(?!\s+drum)"  # "rock drums" / "electronic drums" name a drum kit, not a genre
CONCEPTS: tuple[Concept, ...] = (
    # instruments (MTT's instrument tags; MSD has only guitar)
    _c("piano", "instrument", "piano", None, "piano", "pianos", "grand piano"),
    _c("guitar", "instrument", "guitar", "guitar", "guitar", "guitars"),
    _c("flute", "instrument", "flute", None, "flute", "flutes"),
    _c("strings", "instrument", "strings", None, "strings", "string section", "string ensemble"),
    _c("violin", "instrument", "violin", None, "violin", "violins", "fiddle"),
    _c("cello", "instrument", "cello", None, "cello", "cellos"),
    _c("harp", "instrument", "harp", None, "harp"),
    _c("harpsichord", "instrument", "harpsichord", None, "harpsichord"),
    _c("sitar", "instrument", "sitar", None, "sitar"),
    _c("synth", "instrument", "synth", None, "synth", "synths", "synthesizer", "synthesizers", "synth lead"),
    _c("drums", "instrument", "drums", None, "drums", "drum", "drum kit", "drumming"),
    _c("choir", "instrument", "choir", None, "choir", "choral"),
    # genres (both taggers; MSD's last.fm genres where MTT has none)
    _c("rock", "genre", "rock", "rock", r"rock" + NOT_DRUMS, "rock music"),
    _c("techno", "genre", "techno", "electronic", "techno"),
    _c("electronic", "genre", "electronic", "electronic", r"electronic" + NOT_DRUMS, "edm", "electronica"),
    _c("ambient", "genre", "ambient", "ambient", "ambient"),
    _c("jazz", "genre", None, "jazz", "jazz", "jazzy"),
    _c("classical", "genre", "classical", None, "classical", "orchestral"),
    _c("pop", "genre", "pop", "pop", "pop"),
    _c("metal", "genre", "metal", "metal", "metal", "heavy metal"),
    _c("country", "genre", "country", "country", "country"),
    _c("dance", "genre", "dance", "dance", "dance music", "dance track", "dance song", "dance beat"),
    _c("folk", "genre", None, "folk", "folk"),
    _c("blues", "genre", None, "blues", "blues", "bluesy"),
    _c("funk", "genre", None, "funk", "funk", "funky"),
    _c("soul", "genre", None, "soul", "soul", "r&b", "rnb"),
    _c("hip hop", "genre", None, "Hip-Hop", "hip hop", "hiphop", "rap"),
    _c("punk", "genre", None, "punk", "punk"),
    _c("new age", "genre", "new age", None, "new age"),
    _c("indian", "genre", "indian", None, "indian", "bollywood", "hindustani", "carnatic"),
    _c("opera", "genre", "opera", None, "opera", "operatic"),
    # moods (MSD's last.fm moods; MTT's loud / soft / weird)
    _c("mellow", "mood", None, "Mellow", "mellow"),
    _c("relaxing", "mood", None, "chill", "chill", "chilled", "chillout", "relaxing", "relaxed", "calm", "calming"),
    _c("sad", "mood", None, "sad", "sad", "melancholic", "melancholy", "sorrowful"),
    _c("happy", "mood", None, "happy", "happy", "joyful", "cheerful", "uplifting"),
    _c("sexy", "mood", None, "sexy", "sexy", "sensual"),
    _c("beautiful", "mood", None, "beautiful", "beautiful"),
    _c("party", "mood", None, "party", "party"),
    _c("loud", "mood", "loud", None, "loud", "energetic", "aggressive", "powerful", "intense"),
    _c("soft", "mood", "soft", None, "soft", "gentle", "tender", "quiet"),
    _c("weird", "mood", "weird", None, "weird", "strange", "eerie"),
    # vocals
    _c("vocals", "vocals", "vocals", None, "vocal", "vocals", "vocalist", "voice", "voices", "singing", "singer",
       "sings", "sung"),
    _c("female vocals", "vocals", "female", "female vocalists", "female vocal", "female vocals", "female voice",
       "female singer", "female vocalist", "woman singing", "woman sings"),
    _c("male vocals", "vocals", "male", "male vocalists", "male vocal", "male vocals", "male voice", "male singer",
       "male vocalist", "man singing", "man sings"),
    _c("instrumental", "vocals", "no vocals", "instrumental", "instrumental", "no voice", "no voices", "no vocals",
       "no vocal", "no singing", "no singer", "without vocals", "without voice", negatable=False),
    # tempo words (MTT's fast / slow)
    _c("fast", "tempo", "fast", None, "fast", "fast tempo", "uptempo", "up tempo", "quick", "rapid"),
    _c("slow", "tempo", "slow", None, "slow", "slow tempo", "downtempo", "down tempo"),
)
ASPECTS: tuple[str, ...] = tuple(dict.fromkeys(c.aspect for c in CONCEPTS))
TAGGERS = ("musicnn-mtt", "musicnn-msd")

NEGATION = re.compile(r"(?<![\w-])(?:no|not|without|non|never|lacks?|lacking)(?![\w-])", re.I)
CLAUSE = re.compile(r"[.;:!?\n]+|,\s*(?:but|while|and|with)?\s*")


def clauses(texts: Iterable[str]) -> list[str]:
    """Aspects and caption sentences cut into clauses (where a negation stops applying)."""
    return [c.strip() for t in texts for c in CLAUSE.split(str(t)) if c and c.strip()]


def stated(concept: Concept, texts: Iterable[str], cut: Sequence[str] | None = None) -> bool:
    """Whether some clause of ``texts`` states ``concept`` (a match with no negating word before it); ``cut``:
    the clauses of ``texts`` already cut (``caption_vector`` cuts once for every concept)."""
    for clause in clauses(texts) if cut is None else cut:
        for m in concept.regex.finditer(clause):
            if not concept.negatable or not NEGATION.search(clause[: m.start()]):
                return True
    return False


def concepts_for(aspect: str, tagger: str) -> list[Concept]:
    """The concepts of ``aspect`` that ``tagger`` has a label for, in lexicon order."""
    if aspect not in ASPECTS:
        raise ValueError(f"unknown aspect {aspect!r}; expected one of {', '.join(ASPECTS)}")
    if tagger not in TAGGERS:
        raise ValueError(f"unknown tagger {tagger!r}; expected one of {', '.join(TAGGERS)}")
    return [c for c in CONCEPTS if c.aspect == aspect and c.tag(tagger) is not None]


def caption_vector(texts: Sequence[str], concepts: Sequence[Concept]) -> list[float]:
    """1.0 where the aspects / caption ``texts`` state the concept, else 0.0 (the metric's reference side)."""
    cut = clauses(texts)
    # one search per concept first (most concepts are not mentioned at all); the separator keeps a lookaround
    # from reading across clauses ("electronic" + "drums" must not look like "electronic drums")
    whole = "\n|\n".join(cut)
    return [float(c.regex.search(whole) is not None and stated(c, texts, cut)) for c in concepts]
