"""The seven FER2013 classes, in the alphabetical order fertune uses everywhere, and name matching."""
from __future__ import annotations

import difflib

CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
NUM_CLASSES = len(CLASSES)

# Kaggle fer2013.csv codes (0 Angry, 1 Disgust, 2 Fear, 3 Happy, 4 Sad, 5 Surprise, 6 Neutral) -> ours.
KAGGLE_TO_OURS: dict[int, int] = {0: 0, 1: 1, 2: 2, 3: 3, 4: 5, 5: 6, 6: 4}

# Names other datasets use for our classes (lower-case). FER+, AffectNet, RAF-DB and CK+ spellings.
SYNONYMS: dict[str, str] = {
    "anger": "angry", "angry": "angry", "mad": "angry",
    "disgust": "disgust", "disgusted": "disgust", "disgusting": "disgust",
    "fear": "fear", "fearful": "fear", "afraid": "fear", "scared": "fear",
    "happy": "happy", "happiness": "happy", "joy": "happy", "happy_face": "happy",
    "neutral": "neutral", "calm": "neutral", "none": "neutral",
    "sad": "sad", "sadness": "sad", "unhappy": "sad",
    "surprise": "surprise", "surprised": "surprise", "suprise": "surprise",
}

# Labels that exist in other datasets but have no FER2013 class: dropped and counted, never guessed.
KNOWN_EXTRA_CLASSES = frozenset({"contempt", "unknown", "nf", "not_a_face", "notface", "uncertain"})


def canonical_class(name: str, extra_map: dict[str, str] | None = None) -> str | None:
    """Our class name for `name`, or None for a known non-FER2013 class (e.g. contempt).

    `extra_map` (from `--classes`) is consulted first. Raises ValueError for a name nobody knows,
    naming the closest known names and the fix.
    """
    key = name.strip().lower().replace(" ", "_").replace("-", "_")
    if extra_map:
        lowered = {k.strip().lower(): v for k, v in extra_map.items()}
        if key in lowered:
            target = lowered[key]
            if target is None or str(target).lower() in ("drop", "none", ""):
                return None
            return canonical_class(str(target))
    if key in SYNONYMS:
        return SYNONYMS[key]
    if key in KNOWN_EXTRA_CLASSES:
        return None
    close = difflib.get_close_matches(key, list(SYNONYMS) + list(KNOWN_EXTRA_CLASSES), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ValueError(
        f"unknown class name '{name}'{hint}; fertune's classes are {', '.join(CLASSES)}. "
        f"Map it with --classes '{name}=<one of those>' or '{name}=drop'."
    )


def parse_class_map(text: str | None) -> dict[str, str]:
    """`--classes 'joyful=happy,contempt=drop'` -> {'joyful': 'happy', 'contempt': 'drop'}."""
    if not text:
        return {}
    mapping: dict[str, str] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise ValueError(f"--classes entry '{part}' is not NAME=CLASS; example: --classes 'joyful=happy,contempt=drop'")
        src, dst = (s.strip() for s in part.split("=", 1))
        mapping[src] = dst
    return mapping
