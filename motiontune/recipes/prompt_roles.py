"""Prompt roles: which tokens of a caption's text embedding are the subject and which the motion.

A caption is given with its subject and motion phrases (``subject="a person"``,
``motion="claps"``), or as a marked template, the subject in square brackets and the motion in
braces: ``"[a person] {claps} in a park"``. :func:`find_roles` finds the character span of each
phrase; :func:`token_roles` turns the spans into one role per position of the backbone's text
embedding, from the character offsets the (fast) tokenizer gives for each token:

* Wan (UMT5; also the toy model, a Wan pipeline with a word-level tokenizer): the pipeline cleans
  the text first (``prompt_clean``: HTML entities, runs of white space), then tokenizes it with
  its special tokens, padded to ``max_sequence_length``; position i of the embedding is token i.
* CogVideoX (T5): the text as given, padded to ``max_sequence_length``.
* HunyuanVideo (Llama-style encoder): the text goes into the prompt template, which is tokenized
  as a whole and whose first ``crop_start`` tokens are cropped off; position i is token
  ``crop_start + i`` of the templated text. The CLIP encoder (``tokenizer_2``) gives one pooled
  vector for the whole prompt, which cannot be split by role; :func:`clip_token_roles` gives the
  roles of its tokens (the pooled vector itself is left as the base model computes it).

Roles: :data:`PAD` (-1, a padding position), :data:`OTHER` (0), :data:`SUBJECT` (1),
:data:`MOTION` (2). Mistakes are refused with one line (:class:`InputError`): a phrase that does
not occur in the caption, a subject and a motion that overlap, a caption the tokenizer cuts
before the end of a phrase.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from motiontune.errors import ConfigError, InputError

if TYPE_CHECKING:
    from motiontune.backbones.base import BackboneSpec

PAD, OTHER, SUBJECT, MOTION = -1, 0, 1, 2
ROLE_NAMES = {SUBJECT: "subject", MOTION: "motion"}
#: families whose text encoders are split here
FAMILIES = ("hunyuan_video", "wan", "cogvideox")

_MARK = re.compile(r"\[([^\[\]{}]*)\]|\{([^\[\]{}]*)\}")


def _short(text: str) -> str:
    return text if len(text) <= 80 else text[:77] + "..."


def parse_marked(text: str) -> tuple[str, str | None, str | None]:
    """``"[a fox] {claps} in a field"`` -> ``("a fox claps in a field", "a fox", "claps")``; a text
    without marks comes back unchanged with ``(None, None)``. Refuses a second subject or motion
    mark, an empty mark and unbalanced brackets."""
    if not isinstance(text, str):
        raise InputError(f"a caption must be text, got {type(text).__name__}")
    subject = motion = None
    out, last = [], 0
    for m in _MARK.finditer(text):
        out.append(text[last:m.start()])
        phrase = m.group(1) if m.group(1) is not None else m.group(2)
        if not phrase.strip():
            raise InputError(f"caption {_short(text)!r}: an empty {'[subject]' if m.group(1) is not None else '{motion}'} mark")
        if m.group(1) is not None:
            if subject is not None:
                raise InputError(f"caption {_short(text)!r}: more than one [subject] mark")
            subject = phrase
        else:
            if motion is not None:
                raise InputError(f"caption {_short(text)!r}: more than one {{motion}} mark")
            motion = phrase
        out.append(phrase)
        last = m.end()
    out.append(text[last:])
    clean = "".join(out)
    if (subject is not None or motion is not None) and any(c in clean for c in "[]{}"):
        raise InputError(f"caption {_short(text)!r}: unbalanced [subject] or {{motion}} marks")
    return clean, subject, motion


@dataclass(frozen=True)
class PromptRoles:
    """A caption with the character spans of its subject and motion phrases (end exclusive)."""

    text: str
    subject: tuple[int, int] | None
    #: None: no motion phrase (subject-prior captions, on which only the subject residue acts)
    motion: tuple[int, int] | None

    @property
    def subject_text(self) -> str:
        return self.text[self.subject[0]:self.subject[1]] if self.subject else ""

    @property
    def motion_text(self) -> str:
        return self.text[self.motion[0]:self.motion[1]] if self.motion else ""

    def spans(self) -> list[tuple[int, tuple[int, int]]]:
        return [(role, span) for role, span in ((SUBJECT, self.subject), (MOTION, self.motion)) if span is not None]


def _spans(text: str, phrase: str) -> list[tuple[int, int]]:
    """Every occurrence of ``phrase`` in ``text`` (exact first, else ignoring case), preferring
    whole-word matches."""
    for hay, needle in ((text, phrase), (text.lower(), phrase.lower())):
        found, i = [], hay.find(needle)
        while i >= 0:
            found.append((i, i + len(needle)))
            i = hay.find(needle, i + 1)
        if found:
            def whole(s: tuple[int, int]) -> bool:
                before = s[0] == 0 or not text[s[0] - 1].isalnum()
                after = s[1] == len(text) or not text[s[1]].isalnum()
                return before and after
            return sorted(found, key=lambda s: (not whole(s), s[0]))
    return []


def find_roles(text: str, subject: str | None, motion: str | None) -> PromptRoles:
    """The spans of ``subject`` and ``motion`` in ``text``. Without a subject, the subject is the
    text in front of the motion phrase (captions shaped "<subject> <motion> ...")."""
    if not isinstance(motion, str) or not motion.strip():
        raise InputError(f"caption {_short(text)!r}: no motion phrase given (--motion, or mark it in the caption like {{this}})")
    motion = motion.strip()
    mspans = _spans(text, motion)
    if not mspans:
        raise InputError(f"motion phrase {motion!r} does not occur in the caption {_short(text)!r}")
    if subject is None:
        m = mspans[0]
        head = text[:m[0]]
        if not head.strip():
            raise InputError(f"caption {_short(text)!r}: no subject in front of the motion {motion!r}; give --subject "
                             f"or mark it in the caption like [this]")
        start = len(head) - len(head.lstrip())
        return PromptRoles(text, (start, len(head.rstrip())), m)
    if not isinstance(subject, str) or not subject.strip():
        raise InputError(f"caption {_short(text)!r}: the subject phrase is empty")
    subject = subject.strip()
    sspans = _spans(text, subject)
    if not sspans:
        raise InputError(f"subject phrase {subject!r} does not occur in the caption {_short(text)!r}")
    for s in sspans:
        for m in mspans:
            if s[1] <= m[0] or m[1] <= s[0]:
                return PromptRoles(text, s, m)
    raise InputError(f"the subject phrase {subject!r} and the motion phrase {motion!r} overlap in the caption {_short(text)!r}")


def roles_of(text: str, subject: str | None = None, motion: str | None = None) -> PromptRoles:
    """Roles of a caption given plainly with phrases, or as a marked template (marks win; the
    text must then be the unmarked one: use :func:`parse_marked` first)."""
    clean, s, m = parse_marked(text)
    return find_roles(clean, s if s is not None else subject, m if m is not None else motion)


#: caption readers by name: ``caption -> (subject phrase, motion phrase)``, or None for a caption
#: the reader does not know; "module:function" strings imported when first needed (the toy world's
#: reader for toy-world captions). They let one unmarked caption be split without ``--motion``.
ROLE_READERS: dict[str, Any] = {"toy": "motiontune.toyworld.plugin:caption_roles"}


def register_role_reader(name: str, reader: Any) -> None:
    """Add a caption reader (see :data:`ROLE_READERS`); a name given again is replaced."""
    from motiontune.utils.targets import check_target

    try:
        check_target(reader)
    except ValueError as exc:
        raise ConfigError(f"caption role reader {name!r}: {exc}") from exc
    ROLE_READERS[name] = reader


def read_roles(caption: str) -> tuple[str, str] | None:
    """(subject, motion) phrases of ``caption`` from the first registered reader that knows it."""
    from motiontune.utils.targets import resolve_target

    for reader in ROLE_READERS.values():
        try:
            fn = resolve_target(reader)
        except ImportError:
            continue
        found = fn(caption)
        if found is not None:
            return found
    return None


#: words trimmed from the ends of an inferred motion phrase
_GLUE = frozenset("a an the on in at of with to and over across through into onto by along around near under".split())


def infer_motion(captions: list[str]) -> str | None:
    """The motion phrase of several captions of one motion with different subjects and scenes, none
    given: the longest run of words every caption holds, without function words at its ends (None
    when there is no such run, or only one caption)."""
    texts = [c.split() for c in dict.fromkeys(captions)]
    if len(texts) < 2:
        return None
    def trim(run: list[str]) -> list[str]:
        while run and run[0].lower() in _GLUE:
            run = run[1:]
        while run and run[-1].lower() in _GLUE:
            run = run[:-1]
        return run

    first, best = texts[0], []
    for i in range(len(first)):
        for j in range(i + 1, len(first) + 1):
            run = first[i:j]
            if not all(any(t[k:k + len(run)] == run for k in range(len(t) - len(run) + 1)) for t in texts[1:]):
                break  # a longer run from i is not shared either
            run = trim(run)
            if len(run) > len(best):
                best = run
    return " ".join(best) or None


# ---------------------------------------------------------------------- tokens
def _encode_offsets(tokenizer: Any, text: str, max_length: int | None, what: str) -> tuple[list[tuple[int, int]], list[int], int]:
    """Offsets of the tokens the pipeline keeps (padding to ``max_length``), their attention mask,
    and the token count without truncation."""
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(f"{what}: splitting a prompt by role needs a fast tokenizer (one that gives character offsets)")
    kw: dict[str, Any] = dict(return_offsets_mapping=True, add_special_tokens=True)
    full = tokenizer(text, **kw)
    if max_length is not None:
        kept = tokenizer(text, padding="max_length", max_length=max_length, truncation=True, return_attention_mask=True, **kw)
    else:
        kept = tokenizer(text, return_attention_mask=True, **kw)
    return [tuple(o) for o in kept["offset_mapping"]], list(kept["attention_mask"]), len(full["input_ids"])


def _assign(text: str, roles: PromptRoles, offsets: list[tuple[int, int]], mask: list[int], shift: int, total: int,
            what: str) -> torch.Tensor:
    out = torch.full((len(offsets),), PAD, dtype=torch.long)
    counts = {SUBJECT: 0, MOTION: 0}
    for i, ((a, b), keep) in enumerate(zip(offsets, mask)):
        if not keep:
            continue
        out[i] = OTHER
        a, b = a - shift, b - shift
        for role, (s, e) in roles.spans():
            lo, hi = max(a, s), min(b, e)
            if lo < hi and any(not c.isspace() for c in roles.text[lo:hi]):
                out[i] = role
                counts[role] += 1
                break
    for role, (s, e) in roles.spans():
        # a phrase's last character must lie inside a kept token (else the tokenizer cut it off)
        last = max((k for k in range(s, e) if not roles.text[k].isspace()), default=s)
        if counts[role] == 0 or not any(a - shift <= last < b - shift for (a, b), keep in zip(offsets, mask) if keep):
            phrase = roles.text[s:e]
            raise InputError(f"{what}: the caption {_short(text)!r} is cut by the tokenizer ({total} tokens, "
                             f"{sum(mask)} kept) before the end of the {ROLE_NAMES[role]} phrase {phrase!r}; shorten it")
    return out


def _wan_clean(text: str) -> str:
    try:
        from diffusers.pipelines.wan.pipeline_wan import prompt_clean
    except ImportError:  # pragma: no cover - an older diffusers
        return re.sub(r"\s+", " ", text).strip()
    return prompt_clean(text)


def token_roles(spec: "BackboneSpec", roles: PromptRoles) -> torch.Tensor:
    """One role per position of ``spec``'s text embedding of ``roles.text`` (a LongTensor of the
    embedding's length)."""
    family = spec.family
    what = f"{spec.family} text encoder"
    if family == "wan":
        clean = _wan_clean(roles.text)
        if clean != roles.text:  # find the phrases again in the text the tokenizer sees
            roles = find_roles(clean, _wan_clean(roles.subject_text), _wan_clean(roles.motion_text))
        offsets, mask, total = _encode_offsets(spec.pipe.tokenizer, clean, spec.max_sequence_length, what)
        return _assign(clean, roles, offsets, mask, 0, total, what)
    if family == "cogvideox":
        offsets, mask, total = _encode_offsets(spec.pipe.tokenizer, roles.text, spec.max_sequence_length, what)
        return _assign(roles.text, roles, offsets, mask, 0, total, what)
    if family == "hunyuan_video":
        template = spec.prompt_template
        crop = int(template["crop_start"])
        shift = len(template["template"].split("{}")[0])
        templated = template["template"].format(roles.text)
        offsets, mask, total = _encode_offsets(spec.pipe.tokenizer, templated, spec.max_sequence_length + crop, what)
        offsets, mask = offsets[crop:], mask[crop:]
        return _assign(roles.text, roles, offsets, mask, shift, total - crop, what)
    raise ConfigError(f"prompt roles: the {family} text encoder is not supported (supported: {', '.join(FAMILIES)})")


def clip_token_roles(spec: "BackboneSpec", roles: PromptRoles) -> torch.Tensor:
    """HunyuanVideo's CLIP tokens of the prompt, by role (the pooled vector is one for all of them)."""
    tok = getattr(spec.pipe, "tokenizer_2", None)
    if tok is None:
        raise ConfigError(f"{spec.family} has no CLIP text encoder")
    offsets, mask, total = _encode_offsets(tok, roles.text, 77, "CLIP text encoder")
    return _assign(roles.text, roles, offsets, mask, 0, total, "CLIP text encoder")


__all__ = ["FAMILIES", "MOTION", "OTHER", "PAD", "SUBJECT", "PromptRoles", "clip_token_roles", "find_roles", "infer_motion", "parse_marked",
           "roles_of", "token_roles"]
