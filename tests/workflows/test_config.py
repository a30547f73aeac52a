"""The study config: typo keys, overrides, file errors, plan checks and the run id."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from workflows.config import (
    ConfigError,
    MeasureSpec,
    StudyConfig,
    apply_overrides,
    load_config,
    parse_override,
    validate,
)
from workflows.study import check_plan


def _base(**changes) -> dict:
    data = {"study": "cfgtest", "models": [{"id": "m0", "checkpoint": "builtin:model_0"}],
            "inputs": {"n": 24}, "measures": ["gw", "cka"], "compare": {"tile_size": 8}}
    data.update(changes)
    return data


def _write(tmp_path: Path, data, name: str = "study.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_top_level_typo_names_key_suggests_and_lists_valid_keys() -> None:
    data = _base()
    data["measurs"] = data.pop("measures")
    with pytest.raises(ConfigError) as ei:
        validate(data, "typo.yaml")
    msg = str(ei.value)
    assert "typo.yaml" in msg
    assert "measurs" in msg
    assert "did you mean 'measures'" in msg
    for key in StudyConfig.model_fields:
        assert key in msg.split("valid keys here:")[1]


def test_typo_inside_model_names_dotted_path_and_model_keys() -> None:
    from workflows.config import ModelSpec

    data = _base()
    data["models"][0]["chekpoint"] = data["models"][0].pop("checkpoint")
    with pytest.raises(ConfigError) as ei:
        validate(data)
    msg = str(ei.value)
    line = next(ln for ln in msg.splitlines() if "chekpoint" in ln)
    assert "models.0.chekpoint" in line
    assert "did you mean 'checkpoint'" in line
    valid = line.split("valid keys here:")[1]
    assert {k.strip() for k in valid.split(",")} == set(ModelSpec.model_fields)


def test_overrides_apply_to_nested_keys_and_list_items(tmp_path: Path) -> None:
    path = _write(tmp_path, _base())
    cfg = load_config(path, ["inputs.n=48", "models.0.checkpoint=/some/where/ckpt", "compare.tile_size=3"])
    assert cfg.inputs.n == 48
    assert cfg.models[0].checkpoint == "/some/where/ckpt"
    assert cfg.compare.tile_size == 3
    # the original file is untouched by overrides
    assert load_config(path).inputs.n == 24


def test_override_values_are_parsed_as_yaml() -> None:
    assert parse_override("inputs.n=48") == (["inputs", "n"], 48)
    assert parse_override("targets.enabled=false") == (["targets", "enabled"], False)
    assert parse_override("study=") == (["study"], "")
    out = apply_overrides(_base(), ["measures=[rsm]"])
    assert out["measures"] == ["rsm"]


@pytest.mark.parametrize("bad", ["inputs.n", "=5"])
def test_malformed_override_is_an_error(tmp_path: Path, bad: str) -> None:
    path = _write(tmp_path, _base())
    with pytest.raises(ConfigError) as ei:
        load_config(path, [bad])
    assert repr(bad) in str(ei.value)


def test_override_list_index_out_of_range_is_an_error() -> None:
    with pytest.raises(ConfigError, match="models"):
        apply_overrides(_base(), ["models.5.checkpoint=x"])


def test_override_that_makes_config_invalid_names_the_key(tmp_path: Path) -> None:
    path = _write(tmp_path, _base())
    with pytest.raises(ConfigError) as ei:
        load_config(path, ["inputs.nn=48"])
    assert "inputs.nn" in str(ei.value) and "did you mean 'n'" in str(ei.value)


def test_load_config_missing_file_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "missing.yaml"
    with pytest.raises(ConfigError) as ei:
        load_config(missing)
    assert str(missing) in str(ei.value)


def test_load_config_invalid_yaml_names_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("models: [\n  - id: x\n  checkpoint: : :\n")
    with pytest.raises(ConfigError) as ei:
        load_config(path)
    assert str(path) in str(ei.value)
    assert "YAML" in str(ei.value)


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)


def test_bad_values_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"inputs\.n"):
        validate(_base(inputs={"n": 1}))
    with pytest.raises(ConfigError, match=r"models"):
        validate(_base(models=[{"id": "a b", "checkpoint": "x"}]))
    with pytest.raises(ConfigError, match=r"duplicate model ids"):
        validate(_base(models=[{"id": "a", "checkpoint": "x"}, {"id": "a", "checkpoint": "y"}]))
    with pytest.raises(ConfigError, match=r"models\.0\.checkpoint: required key is missing"):
        validate(_base(models=[{"id": "a"}]))


def test_check_plan_unknown_measure_names_index_and_valid_measures() -> None:
    from layergw import measures

    cfg = validate(_base(measures=["gw", {"name": "gww"}]))
    with pytest.raises(ConfigError) as ei:
        check_plan(cfg)
    msg = str(ei.value)
    assert msg.startswith("measures[1]")
    assert "gww" in msg
    for name in measures.names():
        assert name in msg


def test_check_plan_unknown_parameter_names_valid_parameters() -> None:
    from layergw import measures

    cfg = validate(_base(measures=["cka", {"name": "gw", "params": {"normalise": "max"}}]))
    with pytest.raises(ConfigError) as ei:
        check_plan(cfg)
    msg = str(ei.value)
    assert msg.startswith("measures[1]")
    assert "normalise" in msg and "did you mean 'normalize'" in msg
    for p in measures.parameters("gw"):
        assert p in msg


def test_check_plan_checks_the_targets_measure() -> None:
    cfg = validate(_base(targets={"measure": {"name": "nope"}}))
    with pytest.raises(ConfigError, match=r"^targets\.measures\[0\]"):
        check_plan(cfg)
    cfg = validate(_base(targets={"measures": ["gw", "mlp_probe", {"name": "gw", "params": {"init": "product"}},
                                               {"name": "nope"}]}))
    assert [m.name for m in cfg.targets.measures] == ["gw", "mlp_probe", "nope"]
    with pytest.raises(ConfigError, match=r"^targets\.measures\[2\]: unknown measure 'nope'"):
        check_plan(cfg)
    with pytest.raises(ConfigError, match="targets.measures or targets.measure"):
        validate(_base(targets={"measure": "gw", "measures": ["cka"]}))
    # with targets off, the same bad target measure is not used and not an error
    check_plan(validate(_base(targets={"enabled": False, "measure": {"name": "nope"}})))


def test_check_plan_unknown_model_family() -> None:
    from layergw import families

    cfg = validate(_base(models=[{"id": "m0", "family": "resnet99", "checkpoint": "x"}]))
    with pytest.raises(ConfigError) as ei:
        check_plan(cfg)
    msg = str(ei.value)
    assert "models[0]" in msg and "m0" in msg and "resnet99" in msg
    for fam in families.names():
        assert fam in msg


def test_check_plan_unknown_model_param_names_the_valid_ones() -> None:
    cfg = validate(_base(models=[{"id": "m0", "checkpoint": "builtin:model_0", "params": {"chekpoint": 1}}]))
    with pytest.raises(ConfigError, match=r"models\[0\] \(m0\): model family 'modsum' has no parameter 'chekpoint'"
                                          r".*valid params: \(none\)"):
        check_plan(cfg)


def test_check_plan_accepts_a_good_config() -> None:
    check_plan(validate(_base(measures=["gw", "cka", {"name": "gw", "params": {"normalize": "max"}}])))


def test_default_run_id_ignores_measures_but_not_inputs() -> None:
    a = validate(_base(measures=["gw"]))
    b = validate(_base(measures=["gw", "cka", "rsm"]))
    c = validate(_base(inputs={"n": 25}))
    d = validate(_base(store="/elsewhere", study="other", compare={"tile_size": 8, "max_in_flight": 3, "batch_num_gpus": 0.5}))
    assert re.fullmatch(r"[0-9a-f]{12}", a.default_run_id())
    assert a.default_run_id() == b.default_run_id()
    assert a.default_run_id() != c.default_run_id()
    # where results go, how many tasks run at once and their GPU share do not change the run folder
    assert a.default_run_id() == d.default_run_id()
    plain = validate(_base(compare={}))
    assert plain.default_run_id() == validate(_base(compare={"batch_num_gpus": 0.5})).default_run_id()
    # but the measures do change the results hash
    assert a.results_hash() != b.results_hash()


def test_explicit_run_id_wins() -> None:
    cfg = validate(_base(run_id="mine"))
    assert cfg.resolved_run_id == "mine"
    assert validate(_base()).resolved_run_id == validate(_base()).default_run_id()


def test_two_spellings_of_one_measure_variant_are_one_measure(caplog) -> None:
    with caplog.at_level("INFO"):
        cfg = validate(_base(measures=["gw", {"name": "gw", "params": {"normalize": "none", "init": "product"}},
                                       {"name": "gw"}, "cka", {"name": "gw", "params": {"normalize": "max"}}]))
    assert [(m.name, m.params) for m in cfg.measures] == [("gw", {}), ("cka", {}), ("gw", {"normalize": "max"})]
    assert "measures[1] is the same variant as measures[0]" in caplog.text
    spelled = MeasureSpec(name="gw", params={"normalize": "none", "init": "product"})
    assert spelled.key == MeasureSpec(name="gw").key != MeasureSpec(name="gw", params={"normalize": "max"}).key
    assert spelled.params_json == MeasureSpec(name="gw").params_json
    assert cfg.results_hash(spelled) == cfg.results_hash(MeasureSpec(name="gw"))
