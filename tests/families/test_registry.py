"""Model families: parameters, fingerprints of local checkpoints."""
from __future__ import annotations

from layergw import families


def test_local_folder_fingerprint_follows_contents(tmp_path):
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "config.json").write_text('{"hidden": 4}')
    (ck / "model.safetensors").write_bytes(b"\0" * 100)
    a = families.fingerprint("hf", str(ck))
    assert a == families.fingerprint("hf", str(ck)) and len(a) == 16
    (ck / "config.json").write_text('{"hidden": 8}')
    b = families.fingerprint("hf", str(ck))
    (ck / "model.safetensors").write_bytes(b"\1" * 100)
    assert len({a, b, families.fingerprint("hf", str(ck))}) == 3


def test_hub_names_and_random_inits_are_their_own_fingerprint():
    assert families.fingerprint("hf", "bert-base-uncased") == "bert-base-uncased"
    assert families.fingerprint("resnet9", "random:3") == "random:3"


def test_builtin_minilm_is_hashed_from_the_installed_package():
    fp = families.fingerprint("hf", "builtin:minilm")
    assert fp != "builtin:minilm" and len(fp) == 16


def test_families_are_registered_lazily():
    assert {"modsum", "hf", "resnet9"} <= set(families.names())
