"""``synmotion``: subject and motion embedding residues, an embedding refiner, a motion LoRA and
subject-prior videos (SynMotion; METHODS.md section 4, docs/methods/synmotion.md).

* **Prompt roles** (:mod:`motiontune.recipes.prompt_roles`): each caption's text embedding is
  split into subject tokens and motion tokens by the character spans the tokenizer gives for the
  subject and motion phrases (``subject``/``motion`` settings, ``--subject``/``--motion``, or a
  caption marked ``"[a person] {claps} in a park"``). Prompts at generation are split the same way;
  a prompt without a given subject takes the text in front of the motion phrase as its subject.
* **Residues**: ``e_l_mot`` (initialised from the embedding of the whole phrase "<subject>
  <motion>", its motion tokens) and ``e_l_sub`` (random) are added to the motion and subject
  tokens through zero-initialised 1x1 convolutions Z (resampled along the tokens when a phrase has
  another token count); then the **refiner** ``e' = e + Z(R(e))``, R a one-layer pre-norm
  transformer over the prompt's tokens at width ``refiner_width`` (down- and up-projected), Z
  zero-initialised. Untrained, the recipe is the base model exactly.
* **Motion LoRA** on Q, K and V of the joint (self-)attention (adapter ``motion_lora``).
* **Embedding-exclusive training**: each step, with probability ``sample_alpha`` (0.75), uses the
  user's clips and trains every branch (LoRA, both residues, refiner); otherwise a clip of the
  subject-prior bank (:mod:`motiontune.data.spv`, generated once by the frozen base model) and
  trains only the subject residue. Branches a step does not train do not move at all.

Backbones: HunyuanVideo, Wan (and the toy model), CogVideoX; others are refused.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from motiontune.checks import number
from motiontune.data.dataset import Sample
from motiontune.errors import ConfigError, InputError
from motiontune.recipes.base import RecipeConfig, write_recipe_json
from motiontune.recipes.lora import _as_tuple
from motiontune.recipes.multi import AdapterDecl, NamedLoraRecipe
from motiontune.recipes.prompt_roles import (
    FAMILIES,
    MOTION,
    PAD,
    SUBJECT,
    PromptRoles,
    find_roles,
    infer_motion,
    read_roles,
    parse_marked,
    token_roles,
)
from motiontune.training.plan import Pass, Stage
from motiontune.utils.files import load_tensors, save_tensors

if TYPE_CHECKING:
    from motiontune.backbones.base import BackboneSpec, Conditioning
    from motiontune.hooks.call import DenoiserCall

log = logging.getLogger("motiontune")

LORA = "motion_lora"
MOTION_RESIDUE, SUBJECT_RESIDUE, REFINER = "motion_residue", "subject_residue", "refiner"
EMBEDDING_BRANCHES = (MOTION_RESIDUE, SUBJECT_RESIDUE, REFINER)
EMBEDDING_FILE = "synmotion_embeddings.safetensors"
SPV_POOL = "spv"
#: the paper's settings: 2000 steps per motion, AdamW, lr 2e-5
DEFAULT_STEPS = 2000


@dataclass
class SynMotionConfig(RecipeConfig):
    learning_rate: float = 2e-5
    rank: int = 16
    alpha: float = 16.0
    dropout: float = 0.0
    projections: Any = ("q", "k", "v")
    #: the subject phrase of the training captions: one for all, or one per caption (None: marked
    #: in the captions, or the text in front of the motion phrase)
    subject: Any = None
    #: the motion phrase (the same in every training caption), or a list of candidate phrases of
    #: which the longest that occurs in every caption is taken (one setting for several motions,
    #: e.g. a benchmark's scenarios)
    motion: Any = None
    #: the components (the paper's ablation). ``motion_lora=false`` keeps the LoRA layers but never
    #: trains them, so they stay zero (B starts at zero) and only the embeddings adapt: the
    #: semantic-only arm of the central claim
    motion_lora: bool = True
    motion_residue: bool = True
    subject_residue: bool = True
    refiner: bool = True
    #: probability that a step uses the user's clips (the paper's alpha; 1.0: no subject-prior clips)
    sample_alpha: float = 0.75
    refiner_width: int = 256
    refiner_heads: int = 4
    #: subject-prior prompts, the subject marked like "[a cat] runs on grass" (None: a default list)
    spv_prompts: Any = None
    #: sampling steps and guidance of the bank (None: the backbone's defaults), its first seed
    spv_steps: int | None = None
    spv_guidance: float | None = None
    spv_seed: int = 0
    #: cache root of the banks (None: $XDG_CACHE_HOME/motiontune/spv), or one bank folder
    spv_cache: str | None = None
    spv_bank: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self.projections = _as_tuple(self.projections)
        bad = [p for p in self.projections if p not in ("q", "k", "v", "o")]
        if bad or not self.projections:
            raise ConfigError(f"projections: unknown projection(s) {bad}; choose from q, k, v, o")
        for name in ("motion_lora", "motion_residue", "subject_residue", "refiner"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false (got {getattr(self, name)!r})")
        if not (self.motion_lora or self.motion_residue or self.subject_residue or self.refiner):
            raise ConfigError("motion_lora, motion_residue, subject_residue and refiner are all off: nothing to train")
        self.sample_alpha = number("sample_alpha", self.sample_alpha, 0, 1, low_open=True)
        self.refiner_width = number("refiner_width", self.refiner_width, 1, 65_536, integer=True)
        self.refiner_heads = number("refiner_heads", self.refiner_heads, 1, 1024, integer=True)
        self.spv_steps = number("spv_steps", self.spv_steps, 1, 10_000, integer=True, optional=True)
        self.spv_guidance = number("spv_guidance", self.spv_guidance, 0, 100, optional=True)
        self.spv_seed = number("spv_seed", self.spv_seed, 0, 2**31 - 1, integer=True)
        if isinstance(self.motion, (list, tuple)):
            self.motion = list(self.motion)
            if not self.motion:
                raise ConfigError("motion: the list of candidate phrases is empty")
        motions = self.motion if isinstance(self.motion, list) else [self.motion]
        if self.motion is not None and any(not isinstance(m, str) or not m.strip() for m in motions):
            raise ConfigError(f"motion must be a non-empty phrase or a list of them (got {self.motion!r})")
        if isinstance(self.subject, (list, tuple)):
            self.subject = [s for s in self.subject]
        subjects = self.subject if isinstance(self.subject, list) else [self.subject]
        if any(s is not None and (not isinstance(s, str) or not s.strip()) for s in subjects):
            raise ConfigError(f"subject must be a non-empty phrase or a list of them (got {self.subject!r})")
        if self.spv_prompts is not None:
            prompts = [self.spv_prompts] if isinstance(self.spv_prompts, str) else list(self.spv_prompts)
            if not prompts:
                raise ConfigError("spv_prompts is empty: give at least one prompt, or leave it unset for the default list")
            self.spv_prompts = prompts

    def subjects(self) -> list[str | None]:
        return list(self.subject) if isinstance(self.subject, list) else [self.subject]


# ---------------------------------------------------------------------- modules
class ZeroConv(nn.Conv1d):
    """A 1x1 convolution over the tokens (a per-token linear map), weight and bias zero."""

    def __init__(self, width: int):
        super().__init__(width, width, kernel_size=1)
        nn.init.zeros_(self.weight)
        nn.init.zeros_(self.bias)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(..., n, D) -> (..., n, D)."""
        shape = x.shape
        y = super().forward(x.reshape(-1, shape[-2], shape[-1]).transpose(1, 2))
        return y.transpose(1, 2).reshape(shape)


class Residue(nn.Module):
    """A learnable token sequence ``e_l`` (K, D), added through a zero convolution."""

    def __init__(self, init: torch.Tensor):
        super().__init__()
        self.embedding = nn.Parameter(init.detach().clone())
        self.zero = ZeroConv(init.shape[-1])

    def forward(self, n: int) -> torch.Tensor:
        """``Z(e_l)`` resampled (linearly along the tokens) to ``n`` tokens: (n, D)."""
        z = self.zero.tokens(self.embedding)
        k = z.shape[0]
        if k == n:
            return z
        if k == 1:
            return z.expand(n, -1)
        return F.interpolate(z.t()[None], size=n, mode="linear", align_corners=True)[0].t()


class Refiner(nn.Module):
    """``Z(R(e))``: R = down-projection, one pre-norm transformer layer over the prompt's tokens,
    up-projection; Z a zero 1x1 convolution."""

    def __init__(self, width: int, inner: int, heads: int):
        super().__init__()
        inner = max(1, min(inner, width))
        heads = heads if inner % heads == 0 else 1
        self.down = nn.Linear(width, inner)
        self.layer = nn.TransformerEncoderLayer(inner, heads, dim_feedforward=2 * inner, dropout=0.0, batch_first=True,
                                                norm_first=True)
        self.up = nn.Linear(inner, width)
        self.zero = ZeroConv(width)
        self.inner, self.heads = inner, heads

    def forward(self, e: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """e (B, L, D), valid (B, L) bool -> the update (B, L, D), zero on padding."""
        h = self.layer(self.down(e), src_key_padding_mask=~valid)
        return self.zero.tokens(self.up(h)) * valid[..., None].to(e.dtype)


class RoleEmbedding(nn.Module):
    """The residues and the refiner of one prompt embedding width."""

    def __init__(self, width: int, motion_init: torch.Tensor | None, subject_init: torch.Tensor | None, refiner: bool,
                 inner: int, heads: int):
        super().__init__()
        self.width = width
        self.motion_residue = Residue(motion_init) if motion_init is not None else None
        self.subject_residue = Residue(subject_init) if subject_init is not None else None
        self.refiner = Refiner(width, inner, heads) if refiner else None

    def forward(self, x: torch.Tensor, roles: torch.Tensor, scales: dict[str, float]) -> torch.Tensor:
        """One prompt's embedding x (L, D) with its roles (L,) -> e' (L, D)."""
        e = x.float()
        for name, role in ((MOTION_RESIDUE, MOTION), (SUBJECT_RESIDUE, SUBJECT)):
            module, s = getattr(self, name), scales.get(name, 1.0)
            idx = (roles == role).nonzero().flatten()
            if module is None or s == 0 or idx.numel() == 0:
                continue
            delta = module(int(idx.numel())) * s
            e = e.index_add(0, idx, delta.to(e.dtype))
        s = scales.get(REFINER, 1.0)
        if self.refiner is not None and s != 0:
            e = e + s * self.refiner(e[None], (roles != PAD)[None])[0]
        return e.to(x.dtype)

    def branch_parameters(self) -> dict[str, dict[str, nn.Parameter]]:
        out = {}
        for name in EMBEDDING_BRANCHES:
            module = getattr(self, name)
            if module is not None:
                out[name] = {f"synmotion.{name}.{k}": p for k, p in module.named_parameters()}
        return out


# ---------------------------------------------------------------------- recipe
class SynMotionRecipe(NamedLoraRecipe):
    name = "synmotion"
    summary = ("subject/motion embedding residues split by prompt roles, an embedding refiner and a motion LoRA on Q/K/V; "
               "steps alternate between the user's clips and subject-prior clips of the frozen model")
    config_cls = SynMotionConfig
    inference_adapters = (LORA,)
    default_steps = DEFAULT_STEPS
    supported_families: ClassVar[tuple[str, ...] | None] = FAMILIES
    example_settings: ClassVar[dict[str, Any]] = {"subject": "a red circle", "motion": "moves left", "sample_alpha": 1.0}
    #: SynMotion learns a motion from example videos; the paper has no appearance input
    accepts_images: ClassVar[bool] = False

    def __init__(self, config=None, **overrides: Any):
        super().__init__(config, **overrides)
        self.embed: RoleEmbedding | None = None
        self.embed_scales: dict[str, float] = {n: 1.0 for n in EMBEDDING_BRANCHES}
        #: prompt text -> its roles (registered captions and prompts)
        self._roles: dict[str, PromptRoles | None] = {}
        #: prompt text -> token roles on the applied spec (None: no roles)
        self._tokens: dict[str, torch.Tensor | None] = {}
        self._saved: dict[str, Any] | None = None
        self._spv: list[tuple[str, torch.Tensor]] | None = None
        self.spv_info: dict[str, Any] = {}

    # ------------------------------------------------------------------ prompts
    def prepare_captions(self, captions: list[str], count: int) -> list[str]:
        """Training captions (marked or with the ``subject``/``motion`` settings) -> the plain
        captions; the phrases are checked here, before any model loads, and kept in the settings."""
        captions = list(captions)
        if not count:
            raise InputError("synmotion learns a motion from example videos: give at least one --video")
        if len(captions) == 1:
            captions = captions * count
        cfg = self.config
        subjects = cfg.subjects()
        if len(subjects) not in (1, len(captions)):
            raise ConfigError(f"got {len(subjects)} subjects for {len(captions)} captions: give one --subject, or one per --video")
        subjects = subjects * len(captions) if len(subjects) == 1 else subjects
        parsed = [parse_marked(text) for text in captions]
        motion = cfg.motion
        if isinstance(motion, list):  # candidates: the longest one every caption holds
            fits = [m for m in motion if all(m.strip().lower() in plain.lower() for plain, _, _ in parsed)]
            if not fits:
                raise InputError(f"none of the motion phrases {motion} occurs in every caption")
            motion = max(fits, key=len).strip()
        if motion is None and all(m is None for _, _, m in parsed):
            # several captions of one motion, none marked: the words they all share
            motion = infer_motion([plain for plain, _, _ in parsed])
            if motion is not None:
                log.info("synmotion: motion phrase %r (the words every caption shares; give --motion to choose another)", motion)
            else:  # captions a registered reader knows (the toy world's)
                read = [read_roles(plain) for plain, _, _ in parsed]
                if all(r is not None for r in read) and len({r[1].lower() for r in read}) == 1:
                    motion = read[0][1]
                    log.info("synmotion: motion phrase %r (read from the caption; give --motion to choose another)", motion)
        clean, found_subjects, motions = [], [], []
        for (plain, s, m), subject in zip(parsed, subjects):
            roles = find_roles(plain, s if s is not None else subject, m if m is not None else motion)
            clean.append(plain)
            found_subjects.append(roles.subject_text)
            motions.append(roles.motion_text)
            self._roles[plain] = roles
        if len({m.lower() for m in motions}) > 1:
            raise InputError(f"the captions name different motions ({', '.join(sorted(set(motions)))}); "
                             f"one synmotion adapter learns one motion")
        cfg.motion = motions[0]
        cfg.subject = found_subjects[0] if len(set(found_subjects)) == 1 else found_subjects
        return clean

    def prepare_prompts(self, prompts: list[str], subject: Any = None, motion: str | None = None) -> list[str]:
        """Generation prompts (marked, or with ``subject``/``motion``: one for all or one per prompt)
        -> the plain prompts, each split by role (the motion defaults to the trained one)."""
        prompts = list(prompts)
        subjects = subject if isinstance(subject, (list, tuple)) else [subject]
        if len(subjects) not in (1, len(prompts)):
            raise ConfigError(f"got {len(subjects)} subjects for {len(prompts)} prompts: give one --subject, or one per --prompt")
        subjects = list(subjects) * len(prompts) if len(subjects) == 1 else list(subjects)
        out = []
        for text, s in zip(prompts, subjects):
            plain, ms, mm = parse_marked(text)
            explicit = ms is not None or mm is not None or s is not None or motion is not None
            m = mm if mm is not None else (motion if motion is not None else self.config.motion)
            try:
                roles = find_roles(plain, ms if ms is not None else s, m)
            except InputError:
                if explicit:
                    raise
                log.warning("prompt %r: the motion phrase %r does not occur in it; generated without the learned embeddings",
                            plain, m)
                roles = None
            self._roles[plain] = roles
            self._tokens.pop(plain, None)
            if roles is not None and self.spec is not None:
                self._tokens[plain] = token_roles(self.spec, roles)  # refuses a caption cut before a phrase
            out.append(plain)
        return out

    def _derive(self, text: str) -> PromptRoles | None:
        """Roles of a prompt nobody registered: the trained phrases, else the text in front of the motion."""
        cfg = self.config
        for s in [*cfg.subjects(), None]:
            try:
                return find_roles(text, s, cfg.motion)
            except InputError:
                continue
        return None

    def _token_roles(self, text: str, spec: "BackboneSpec | None" = None) -> torch.Tensor | None:
        if text not in self._tokens:
            roles = self._roles[text] if text in self._roles else self._derive(text)
            try:
                self._tokens[text] = token_roles(spec or self.spec, roles) if roles is not None else None
            except InputError:
                if text in self._roles:
                    raise
                self._tokens[text] = None
        return self._tokens[text]

    def _row_roles(self, x: torch.Tensor) -> list[torch.Tensor | None]:
        """The token roles of each row of a text embedding batch, found by matching the row with the
        embedding of a known prompt (registered, or in the backbone's prompt cache)."""
        spec = self.spec
        key = spec.text_key
        cache = getattr(spec, "_prompt_cache", {})
        texts = list(dict.fromkeys([*self._roles, *cache]))
        out: list[torch.Tensor | None] = [None] * x.shape[0]
        refs = []
        for text in texts:
            if text not in cache:
                spec.encode_prompt([text])
            ref = cache.get(text, {}).get(key)
            if ref is not None:
                refs.append((text, ref[0]))
        for i in range(x.shape[0]):
            row = x[i]
            for text, ref in refs:
                if ref.shape == row.shape and torch.equal(ref.to(row.device, row.dtype), row):
                    out[i] = self._token_roles(text)
                    break
        return out

    # ------------------------------------------------------------------ layout
    def adapter_plan(self, spec: "BackboneSpec") -> dict[str, AdapterDecl]:
        cfg = self.config
        return {LORA: AdapterDecl(("joint",), cfg.projections, cfg.rank, cfg.alpha, cfg.dropout)}

    def _check_family(self, spec: "BackboneSpec") -> None:
        if spec.family not in FAMILIES:
            raise ConfigError(f"the synmotion recipe runs on {', '.join(FAMILIES)} (it splits their text encoders' "
                              f"embeddings by prompt role); {spec.family} is not supported")

    def apply(self, spec: "BackboneSpec") -> None:
        if self.spec is spec:
            return
        self._check_family(spec)
        cfg = self.config
        if cfg.motion is None:
            raise ConfigError("the synmotion recipe needs the motion phrase: --motion, or mark it in the captions like {this}")
        if isinstance(cfg.motion, list):
            raise ConfigError("motion lists candidate phrases; the captions choose one (motiontune train / api.train), "
                              "or give the one phrase")
        # every training caption is split on this tokenizer before the model is changed
        self._tokens.clear()
        for text in [t for t, r in self._roles.items() if r is not None]:
            self._token_roles(text, spec)
        super().apply(spec)
        ref = next(spec.denoiser.parameters())
        dtype = torch.float32 if ref.dtype in (torch.float16, torch.bfloat16) else ref.dtype
        phrase_mot, phrase_sub = self._initial_embeddings(spec)
        width = int(phrase_mot.shape[-1])
        saved = self._saved or {}
        if saved:
            if int(saved.get("width", width)) != width:
                raise ConfigError(f"the synmotion embeddings were trained for text width {saved.get('width')}; "
                                  f"this {spec.family} model's is {width}")
            if saved.get("motion_tokens"):
                phrase_mot = torch.zeros(int(saved["motion_tokens"]), width)
            if saved.get("subject_tokens"):
                phrase_sub = torch.zeros(int(saved["subject_tokens"]), width)
        std = float(phrase_mot.float().std()) if phrase_mot.numel() > 1 else 1.0
        sub_init = torch.randn(phrase_sub.shape) * (std if std > 0 else 1.0)
        self.embed = RoleEmbedding(
            width,
            phrase_mot.float() if cfg.motion_residue else None,
            sub_init if cfg.subject_residue else None,
            cfg.refiner, cfg.refiner_width, cfg.refiner_heads,
        ).to(ref.device, dtype)

    def _initial_embeddings(self, spec: "BackboneSpec") -> tuple[torch.Tensor, torch.Tensor]:
        """The embedding of the whole phrase "<subject> <motion>" at its motion tokens (e_l_mot's
        start) and at its subject tokens (for the subject residue's token count)."""
        cfg = self.config
        subject = next((s for s in cfg.subjects() if s), None) or "a person"
        phrase = f"{subject.strip()} {cfg.motion.strip()}"
        roles = find_roles(phrase, subject.strip(), cfg.motion.strip())
        tokens = token_roles(spec, roles)
        emb = spec.encode_prompt([phrase])[spec.text_key][0].detach().float().cpu()
        mot, sub = emb[tokens == MOTION], emb[tokens == SUBJECT]
        return mot.clone(), sub.clone()

    # ------------------------------------------------------------------ conditioning
    def condition(self, cond: "Conditioning", call: "DenoiserCall") -> "Conditioning":
        if self.embed is None or not any(self.embed_scales.get(n, 0) for n in self.embed.branch_parameters()):
            return cond
        key = self.spec.text_key
        x = cond[key]
        roles = self._row_roles(x)
        if all(r is None for r in roles):
            return cond
        rows = [x[i] if r is None else self.embed(x[i], r.to(x.device), self.embed_scales) for i, r in enumerate(roles)]
        return {**cond, key: torch.stack(rows)}

    # ------------------------------------------------------------------ branches and scales
    def _require_embed(self) -> RoleEmbedding:
        if self.embed is None:
            raise ConfigError(f"the {self.name} recipe is not applied to a backbone yet")
        return self.embed

    def branches(self) -> dict[str, dict[str, torch.nn.Parameter]]:
        out = super().branches()
        out.update(self._require_embed().branch_parameters())
        return out

    def adapter_names(self) -> list[str]:
        return [*self._require().names, *self._require_embed().branch_parameters()]

    def set_adapter_scale(self, scale: float) -> None:
        self.set_adapter_scales({n: scale for n in self.adapter_names()})

    def set_adapter_scales(self, scales: dict[str, float]) -> None:
        lora = {n: s for n, s in scales.items() if n not in EMBEDDING_BRANCHES}
        if lora:
            self._require().set_scales(lora)
        for n, s in scales.items():
            if n in EMBEDDING_BRANCHES:
                self.embed_scales[n] = float(s)

    def adapter_scales(self, t: float) -> dict[str, float]:
        s = self.adapter_scale(t)
        return {n: s for n in self.adapter_names()}

    # ------------------------------------------------------------------ training plan
    def _uses_spv(self) -> bool:
        return self.config.sample_alpha < 1.0 and self.config.subject_residue

    def stages(self) -> list[Stage]:
        return [Stage(name="synmotion")]

    def passes(self, step: int, stage: Stage, generator: torch.Generator) -> list[Pass]:
        u = float(torch.rand((), generator=generator))
        if not self._uses_spv() or u < self.config.sample_alpha:
            if self.config.motion_lora:
                return [Pass(pool="video", train=None, name="user")]  # every branch
            return [Pass(pool="video", train=tuple(self._require_embed().branch_parameters()), name="user")]
        return [Pass(pool=SPV_POOL, train=(SUBJECT_RESIDUE,), name="spv")]

    def pools(self) -> dict[str, Any]:
        if not self._uses_spv():
            return {}
        if self.config.spv_bank:  # a pinned bank of another model is refused before the first step
            from motiontune.data.spv import check_bank_folder

            check_bank_folder(self.config.spv_bank, self.spec, [p for p, _ in self.spv_prompts()])
        return {SPV_POOL: self._draw_spv}

    def spv_prompts(self) -> list[tuple[str, PromptRoles]]:
        """The bank's prompts, plain, with their subject spans (the motion residue does not act on them)."""
        from motiontune.data.spv import default_prompts

        given = self.config.spv_prompts
        prompts = list(given) if given is not None else default_prompts(self.spec)
        out = []
        for text in prompts:
            plain, subject, _ = parse_marked(text)
            if subject is None:
                if given is not None:
                    raise ConfigError(f"SPV prompt {text!r}: mark its subject like [a cat] (the subject residue acts on it)")
                words = plain.split()
                subject = " ".join(words[:2])
            start = plain.find(subject)
            out.append((plain, PromptRoles(plain, (start, start + len(subject)), None)))
        return out

    def _draw_spv(self, data: Any, generator: torch.Generator, n: int) -> list[Sample]:
        if self._spv is None:
            self._spv = self._make_spv(data)
        idx = torch.randint(len(self._spv), (n,), generator=generator).tolist()
        return [Sample(None, self._spv[i][0], "video", f"spv:{i}", latents=self._spv[i][1]) for i in idx]

    def _make_spv(self, data: Any) -> list[tuple[str, torch.Tensor]]:
        """The subject-prior bank at the size of the user's clips, made by the frozen base model."""
        from motiontune.data.spv import SPVSettings, build_bank

        videos = getattr(data, "videos", None) or []
        if not videos or videos[0].pixels is None:
            raise ConfigError("subject-prior clips need the user's reference clips (their size); set sample_alpha=1 otherwise")
        _, f, h, w = videos[0].pixels.shape
        spec, cfg = self.spec, self.config
        prompts = self.spv_prompts()
        for plain, roles in prompts:
            self._roles[plain] = roles
            self._tokens.pop(plain, None)
        settings = SPVSettings([p for p, _ in prompts], (f, h, w), cfg.spv_steps or spec.default_steps,
                               spec.default_guidance if cfg.spv_guidance is None else cfg.spv_guidance, cfg.spv_seed)
        a = self._require()
        before = {name: a.scale(name) for name in a.names}
        a.set_scales({name: 0.0 for name in a.names})  # the frozen base model (the embeddings act only through condition())
        try:
            bank = build_bank(spec, settings, cache_root=cfg.spv_cache, folder=cfg.spv_bank, progress=True)
        finally:
            a.set_scales(before)
        self.spv_info = {"folder": bank.folder, "clips": len(bank.latents), "generated": bank.generated,
                         "seconds_per_clip": bank.seconds_per_clip}
        return list(zip(bank.prompts, bank.latents))

    # ------------------------------------------------------------------ files
    def save(self, folder: str, metadata: dict[str, Any] | None = None) -> None:
        a = self._require()
        embed = self._require_embed()
        written = a.save(folder, self.shipped_adapters())
        state = {k: v for ps in embed.branch_parameters().values() for k, v in ps.items()}
        save_tensors(state, os.path.join(folder, EMBEDDING_FILE), {"format": "motiontune-synmotion-1"})
        layout = {
            "file": EMBEDDING_FILE, "width": embed.width,
            "motion_tokens": int(embed.motion_residue.embedding.shape[0]) if embed.motion_residue is not None else None,
            "subject_tokens": int(embed.subject_residue.embedding.shape[0]) if embed.subject_residue is not None else None,
            "refiner": {"width": embed.refiner.inner, "heads": embed.refiner.heads} if embed.refiner is not None else None,
            "branches": list(embed.branch_parameters()),
        }
        if self.spv_info:
            layout["spv"] = self.spv_info
        write_recipe_json(folder, self, {**(metadata or {}), "adapters": written, "synmotion": layout})

    def prepare_load(self, info: dict[str, Any], folder: str) -> None:
        super().prepare_load(info, folder)
        saved = info.get("synmotion")
        if not isinstance(saved, dict) or not os.path.isfile(os.path.join(folder, EMBEDDING_FILE)):
            raise ConfigError(f"{folder}: the adapter folder lacks the synmotion embeddings ({EMBEDDING_FILE})")
        self._saved = saved

    def load_weights(self, folder: str) -> None:
        super().load_weights(folder)
        path = os.path.join(folder, EMBEDDING_FILE)
        state = load_tensors(path)
        params = {k: p for ps in self._require_embed().branch_parameters().values() for k, p in ps.items()}
        missing, unexpected = sorted(set(params) - set(state)), sorted(set(state) - set(params))
        if missing or unexpected:
            raise ConfigError(f"{path}: the embeddings do not match the settings ({len(missing)} missing, "
                              f"{len(unexpected)} unexpected, e.g. {(missing or unexpected)[0]})")
        with torch.no_grad():
            for k, p in params.items():
                if p.shape != state[k].shape:
                    raise ConfigError(f"{path}: {k} has shape {tuple(state[k].shape)}, expected {tuple(p.shape)}")
                p.copy_(state[k].to(p.dtype))

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["subject"], out["motion"] = self.config.subject, self.config.motion
        return out


__all__ = ["EMBEDDING_BRANCHES", "LORA", "SynMotionConfig", "SynMotionRecipe"]
