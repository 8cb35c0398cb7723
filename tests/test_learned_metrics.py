"""Learned metrics on tiny random CLIP / DINO models saved to folders: known answers and skips."""

import json
from typing import List

import numpy as np
import pytest
import torch

from motiontune.errors import ConfigError, InputError
from motiontune.evaluation import learned
from motiontune.evaluation.learned import (
    ClipEmbedder,
    DinoEmbedder,
    LearnedScorer,
    RaftFlow,
    WeightSources,
    frechet_distance,
    raft_dynamic_degree,
)
from motiontune.evaluation.metrics import dynamic_degree
from motiontune.evaluation.registry import METRICS, compute_metrics

WORDS = "a red blue circle square moves left right on black white background".split()


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    from motiontune.testing.tiny_clip import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("tiny_clip"), WORDS)


@pytest.fixture(scope="module")
def dino_dir(tmp_path_factory):
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    folder = tmp_path_factory.mktemp("tiny_dino")
    torch.manual_seed(0)
    ViTModel(ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                       image_size=32, patch_size=8), add_pooling_layer=False).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def dinov2_dir(tmp_path_factory):
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    folder = tmp_path_factory.mktemp("tiny_dinov2")
    torch.manual_seed(1)
    Dinov2Model(Dinov2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                             image_size=32, patch_size=8)).save_pretrained(folder)
    BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return str(folder)


def moving(frames=6, size=32, seed=0):
    rng = np.random.default_rng(seed)
    video = np.zeros((frames, size, size, 3), np.uint8)
    for i in range(frames):
        video[i] = rng.integers(0, 60, (size, size, 3))
        video[i, 8:20, 3 * i : 3 * i + 10] = (220, 30, 30)
    return video


def static(frames=5, size=32):
    return np.repeat(moving(1, size)[:1], frames, axis=0)


def test_registered_with_weights_they_need():
    for name, model in [("clip_t", "--clip"), ("clip_i", "--clip"), ("clip_temporal_consistency", "--clip"),
                        ("dino_i", "--dino"), ("dino_subject_consistency", "--dino"), ("pickscore", "--pickscore"),
                        ("fvd", "--i3d"), ("raft_dynamic_degree", "--raft")]:
        info = METRICS[name]
        assert info.needs_weights and info.function is None and model in info.weights
    assert "openai/clip-vit-base-patch32" in METRICS["clip_t"].weights
    assert "facebook/dino-vits16" in METRICS["dino_i"].weights
    assert "yuvalkirstain/PickScore_v1" in METRICS["pickscore"].weights
    assert "--raft FILE" in METRICS["raft_dynamic_degree"].weights
    assert METRICS["raft_dynamic_degree"].value_range == (0.0, 1.0)


def test_missing_weights_are_skipped_and_the_rest_goes_on():
    scorer = LearnedScorer()
    results = scorer.score(["clip_t", "dino_subject_consistency", "raft_dynamic_degree"], static(), prompt="a red square")
    assert results["clip_t"] == f"skipped: needs {METRICS['clip_t'].weights}"
    assert results["clip_t"].startswith("skipped: needs CLIP weights (--clip PATH_OR_ID")
    assert results["dino_subject_consistency"].startswith("skipped: needs DINO weights (--dino")
    assert results["raft_dynamic_degree"].startswith("skipped: needs RAFT weights (--raft FILE")
    # the registry's own path gives the same message next to a computed weight-free metric
    mixed = compute_metrics(["clip_t", "temporal_flickering"], static())
    assert mixed == {"clip_t": results["clip_t"], "temporal_flickering": 1.0}


def test_clip_known_answers(clip_dir):
    clip = ClipEmbedder.load(clip_dir)
    video = moving()
    emb = clip.embed_images(video)
    assert emb.shape == (6, 8) and torch.allclose(emb.norm(dim=-1), torch.ones(6), atol=1e-5)
    # CLIP-I of a video against its own frames: best match = 100 for any video; every pair = 100 when static
    assert learned.clip_i(video, list(video), clip, pairing="best") == pytest.approx(100.0, abs=1e-3)
    assert learned.clip_i(video, video, clip, pairing="all") < 99.99
    assert learned.clip_i(static(), static()[:2], clip) == pytest.approx(100.0, abs=1e-3)
    assert learned.clip_temporal_consistency(static(), clip) == pytest.approx(1.0, abs=1e-5)
    assert learned.clip_temporal_consistency(video, clip) < 0.99999
    # CLIP-T is 100 x the frame mean of the cosine to the prompt's text embedding
    text = clip.embed_texts(["a red square moves right"])[0]
    expected = 100 * float(np.mean([float(e @ text) for e in emb]))
    assert learned.clip_t(video, "a red square moves right", clip) == pytest.approx(expected, abs=1e-3)
    assert -100 <= expected <= 100


def test_scorer_matches_functions_and_pickscore_scale(clip_dir):
    scorer = LearnedScorer(WeightSources(clip=clip_dir, pickscore=clip_dir))
    video = moving()
    prompt = "a red square moves right"
    res = scorer.score(["clip_t", "clip_i", "clip_temporal_consistency", "pickscore", "fvd"], video, prompt=prompt,
                       reference_images=static()[:1])
    clip = scorer.model("clip")
    assert res["clip_t"] == pytest.approx(learned.clip_t(video, prompt, clip), abs=1e-4)
    assert res["clip_i"] == pytest.approx(learned.clip_i(video, static()[:1], clip), abs=1e-4)
    # PickScore = exp(logit_scale) x cosine; the tiny model's logit scale is exp(2.6592) = 1 / 0.07
    assert clip.logit_scale == pytest.approx(1 / 0.07, rel=1e-4)
    assert res["pickscore"] == pytest.approx(res["clip_t"] / 100 * clip.logit_scale, abs=1e-4)
    assert res["fvd"].startswith("skipped: needs I3D")
    missing = scorer.score(["clip_t", "clip_i"], video)
    assert missing == {"clip_t": "skipped: needs a prompt", "clip_i": "skipped: needs reference images or a reference video"}


def test_dino_known_answers(dino_dir, dinov2_dir):
    for folder in (dino_dir, dinov2_dir):
        dino = DinoEmbedder.load(folder)
        assert learned.dino_subject_consistency(static(), dino) == pytest.approx(1.0, abs=1e-5)
        assert learned.dino_i(static(), static()[:1], dino) == pytest.approx(1.0, abs=1e-5)
        value = learned.dino_subject_consistency(moving(), dino)
        assert 0.0 <= value < 1.0
        assert learned.dino_i(moving(), list(moving()), dino, pairing="best") == pytest.approx(1.0, abs=1e-5)


def test_subject_consistency_definition():
    e = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    # frame 1: prev 0, first 0 -> 0; frame 2: prev 0, first 1 -> 0.5; mean 0.25
    assert learned.subject_consistency(e) == pytest.approx(0.25)
    assert learned.consecutive_similarity(e) == pytest.approx(0.0)
    neg = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert learned.subject_consistency(neg) == 0.0  # negative cosines clip at 0 as in VBench
    with pytest.raises(InputError):
        learned.consecutive_similarity(e[:1])


def test_bad_weights_are_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot load CLIP weights from"):
        ClipEmbedder.load(str(tmp_path / "nowhere"))
    scorer = LearnedScorer(WeightSources(dino=str(tmp_path)))
    with pytest.raises(ConfigError, match="cannot load DINO weights"):
        scorer.check(["dino_i"])


def test_frechet_distance():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(50, 4))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # equal covariances: the distance is the squared distance of the means
    assert frechet_distance(a, a + 3.0) == pytest.approx(4 * 9.0, rel=1e-6)
    with pytest.raises(InputError):
        frechet_distance(a[:1], a)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_fvd_with_a_torchscript_extractor(tmp_path):
    class Fake(torch.nn.Module):
        def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = True):
            return torch.stack([x.mean(dim=(1, 2, 3, 4)), x.std(dim=(1, 2, 3, 4)), x[:, 0].mean(dim=(1, 2, 3))], dim=1)

    path = tmp_path / "i3d.pt"
    torch.jit.script(Fake()).save(str(path))
    scorer = LearnedScorer(WeightSources(i3d=str(path)))
    videos = [moving(seed=s) for s in range(3)]
    assert scorer.fvd(videos, videos) == pytest.approx(0.0, abs=1e-6)
    assert scorer.fvd(videos, [static(6), moving(seed=5)]) > 0
    assert scorer.fvd(videos[:1], videos).startswith("skipped: FVD needs at least 2")


def test_eval_command_with_clip(clip_dir, tmp_path, capsys):
    from motiontune.cli import main
    from motiontune.data.video_io import write_video

    path = tmp_path / "static.mp4"
    write_video(static(6), path)
    out = tmp_path / "scores.json"
    rc = main(["eval", "--video", str(path), "--reference", str(path), "--prompt", "a red square",
               "--metrics", "clip_temporal_consistency,clip_i,dino_i,temporal_flickering", "--clip", clip_dir,
               "--json", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "clip_temporal_consistency" in printed and "skipped" in printed
    data = json.loads(out.read_text())
    scores = data["videos"][0]["metrics"]
    assert scores["clip_temporal_consistency"] == pytest.approx(1.0, abs=1e-4)
    assert scores["temporal_flickering"] == pytest.approx(1.0, abs=1e-3)
    assert scores["clip_i"] == pytest.approx(100.0, abs=0.05)  # static clip vs its own (lossy) frames
    assert scores["dino_i"].startswith("skipped: needs DINO weights")


# ------------------------------------------------------------------------------ RAFT dynamic degree


class ConstantFlow(torch.nn.Module):
    """A fake torchvision RAFT: checks its inputs, returns [half flow, flow] of a constant (dx, dy) in its pixels."""

    def __init__(self, dx: float, dy: float):
        super().__init__()
        self.dx = dx
        self.dy = dy

    def forward(self, image1: torch.Tensor, image2: torch.Tensor) -> List[torch.Tensor]:
        if image1.shape != image2.shape or image1.dim() != 4 or image1.shape[1] != 3:
            raise RuntimeError("frames must be two (N, 3, H, W) tensors of one shape")
        if image1.shape[2] % 8 != 0 or image1.shape[3] % 8 != 0 or image1.shape[2] < 128 or image1.shape[3] < 128:
            raise RuntimeError("H and W must be multiples of 8, at least 128")
        if bool(image1.min() < -1.0) or bool(image1.max() > 1.0) or bool(image2.min() < -1.0) or bool(image2.max() > 1.0):
            raise RuntimeError("frames must lie in [-1, 1]")
        flow = torch.zeros(image1.shape[0], 2, image1.shape[2], image1.shape[3])
        flow[:, 0] = self.dx
        flow[:, 1] = self.dy
        return [0.5 * flow, flow]


class ZeroFlow(torch.nn.Module):
    """A fake RAFT returning a plain tensor of zero flow."""

    def forward(self, image1: torch.Tensor, image2: torch.Tensor) -> torch.Tensor:
        return torch.zeros(image1.shape[0], 2, image1.shape[2], image1.shape[3])


class Recorder(torch.nn.Module):
    """A Python (not scripted) fake that keeps what it was called with."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, image1, image2):
        self.calls.append((image1.clone(), image2.clone()))
        return [torch.zeros(image1.shape[0], 2, *image1.shape[2:])]


def save_scripted(module: torch.nn.Module, path) -> str:
    torch.jit.script(module).save(str(path))
    return str(path)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_raft_dynamic_degree_known_answers(tmp_path):
    # a 32x32 video goes to RAFT as 128x128, so its flow is a quarter of the model's in video pixels;
    # VBench's threshold is 6 * 32 / 256 = 0.75 px, and 6 frames need round(4 * 6 / 16) = 2 moving pairs
    fast = RaftFlow.load(save_scripted(ConstantFlow(6.0, 8.0), tmp_path / "fast.pt"))  # |flow| = 10 -> 2.5 px
    slow = RaftFlow.load(save_scripted(ConstantFlow(0.6, 0.8), tmp_path / "slow.pt"))  # |flow| = 1 -> 0.25 px
    zero = RaftFlow.load(save_scripted(ZeroFlow(), tmp_path / "zero.pt"))
    video = moving()
    result = raft_dynamic_degree(video, fast)
    np.testing.assert_allclose(result.pair_magnitudes, 2.5, rtol=1e-6)
    assert result.pair_magnitudes.shape == (5,)
    assert result.threshold == pytest.approx(0.75) and result.required_pairs == 2
    assert result.moving_pairs == 5 and result.is_dynamic and result.score == 1.0
    low = raft_dynamic_degree(video, slow)
    np.testing.assert_allclose(low.pair_magnitudes, 0.25, rtol=1e-6)
    assert low.moving_pairs == 0 and low.score == 0.0
    still = raft_dynamic_degree(static(), zero)
    assert still.pair_magnitudes.shape == (4,) and (still.pair_magnitudes == 0).all() and still.score == 0.0
    # the same thresholds as the OpenCV dynamic_degree, and its fps factor: 4 fps doubles the threshold
    opencv = dynamic_degree(video)
    assert (result.threshold, result.required_pairs) == (opencv.threshold, opencv.required_pairs)
    at_4fps = raft_dynamic_degree(video, slow, fps=4.0)
    assert at_4fps.threshold == pytest.approx(1.5)
    with pytest.raises(InputError, match="at least 2 frames"):
        raft_dynamic_degree(video[:1], fast)
    with pytest.raises(ConfigError, match="fps must be positive"):
        raft_dynamic_degree(video, fast, fps=0)


def test_raft_inputs_are_multiples_of_8_in_minus_one_to_one():
    recorder = Recorder()
    raft = RaftFlow(recorder, batch_size=2)
    assert raft.input_size(32, 50) == (128, 128)
    assert raft.input_size(150, 203) == (152, 208)
    assert raft.input_size(256, 136) == (256, 136)
    video = moving(frames=5, size=32)
    video[0, 24:32, :8] = 0  # black and white blocks: -1 and 1 after the (bilinear) resize
    video[0, 24:32, 24:32] = 255
    flows = list(raft.flows(video))
    assert len(flows) == 4 and flows[0].shape == (128, 128, 2)
    # 4 pairs in batches of 2: frame t is image1 and frame t + 1 image2 of pair t
    assert [c[0].shape for c in recorder.calls] == [torch.Size([2, 3, 128, 128])] * 2
    firsts = torch.cat([c[0] for c in recorder.calls])
    seconds = torch.cat([c[1] for c in recorder.calls])
    assert torch.equal(firsts[1:], seconds[:-1])
    assert firsts.dtype == torch.float32
    assert float(firsts.min()) == pytest.approx(-1.0) and float(firsts.max()) == pytest.approx(1.0)
    assert -1.0 <= float(torch.cat([firsts, seconds]).min()) and float(torch.cat([firsts, seconds]).max()) <= 1.0
    # an odd size: both sides padded up to multiples of 8 by resizing
    recorder.calls.clear()
    list(raft.flows(np.zeros((3, 150, 203, 3), np.uint8)))
    assert recorder.calls[0][0].shape[2:] == (152, 208)


def test_raft_anisotropic_resize_scales_each_axis_back():
    class Fixed(torch.nn.Module):
        def forward(self, image1, image2):
            flow = torch.zeros(image1.shape[0], 2, *image1.shape[2:])
            flow[:, 0], flow[:, 1] = 8.0, 4.0
            return flow

    raft = RaftFlow(Fixed())
    # 64 x 32 frames go in as 128 x 128: dx is scaled by 32 / 128, dy by 64 / 128
    flow = next(raft.flows(np.zeros((2, 64, 32, 3), np.uint8)))
    np.testing.assert_allclose(flow[..., 0], 2.0)
    np.testing.assert_allclose(flow[..., 1], 2.0)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_raft_in_the_scorer(tmp_path):
    scorer = LearnedScorer(WeightSources(raft=save_scripted(ConstantFlow(6.0, 8.0), tmp_path / "raft.pt")))
    scorer.check(["raft_dynamic_degree"])
    res = scorer.score(["raft_dynamic_degree", "clip_t"], moving(), prompt="a red square")
    assert res["raft_dynamic_degree"] == 1.0
    assert res["clip_t"].startswith("skipped: needs CLIP")


def test_bad_raft_file_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot load RAFT weights from") as missing:
        RaftFlow.load(str(tmp_path / "nowhere.pt"))
    assert "\n" not in str(missing.value)
    junk = tmp_path / "junk.pt"
    junk.write_text("not a TorchScript archive\n" * 3)
    with pytest.raises(ConfigError, match="cannot load RAFT weights from") as bad:
        LearnedScorer(WeightSources(raft=str(junk))).check(["raft_dynamic_degree"])
    assert "\n" not in str(bad.value) and "junk.pt" in str(bad.value)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_eval_command_with_raft(tmp_path, capsys):
    from motiontune.cli import main
    from motiontune.data.video_io import write_video

    moving_path, static_path = tmp_path / "moving.mp4", tmp_path / "static.mp4"
    write_video(moving(), moving_path)
    write_video(static(6), static_path)
    raft = save_scripted(ConstantFlow(6.0, 8.0), tmp_path / "raft.pt")
    out = tmp_path / "scores.json"
    rc = main(["eval", "--video", str(moving_path), "--metrics", "raft_dynamic_degree,temporal_flickering",
               "--raft", raft, "--device", "cpu", "--json", str(out)])
    assert rc == 0
    assert "raft_dynamic_degree" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["videos"][0]["metrics"]["raft_dynamic_degree"] == 1.0
    assert "raft_dynamic_degree" not in data["skipped"]
    zero = save_scripted(ZeroFlow(), tmp_path / "zero.pt")
    assert main(["eval", "--video", str(static_path), "--metrics", "raft_dynamic_degree", "--raft", zero,
                 "--device", "cpu", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["videos"][0]["metrics"]["raft_dynamic_degree"] == 0.0
    # without --raft: skipped, naming the option
    assert main(["eval", "--video", str(static_path), "--metrics", "raft_dynamic_degree", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "raft_dynamic_degree: skipped: needs RAFT weights (--raft FILE" in printed
