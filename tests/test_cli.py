"""Bad input: one clear message naming the option/file/key, exit status 2, nothing stored."""
from __future__ import annotations

import pytest

from benchmark.run import main
from datasets import get_dataset_class, list_datasets


def _run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


@pytest.fixture
def results(tmp_path):
    return tmp_path / "results"


def test_unknown_method_lists_known(capsys, results):
    code, err = _run(capsys, "--methods", "late_fusion,nope", "--results-dir", str(results))
    assert code == 2
    assert "unknown method 'nope'" in err and "late_fusion" in err
    assert not results.exists()


def test_unknown_dataset_lists_known(capsys, results):
    code, err = _run(capsys, "--dataset", "imagenet", "--results-dir", str(results))
    assert code == 2 and "unknown dataset 'imagenet'" in err and "synthetic" in err
    assert not results.exists()


@pytest.mark.parametrize("rate", ["1.0", "-0.1", "1.5"])
def test_rate_outside_unit_interval(capsys, results, rate):
    code, err = _run(capsys, "--missing-rate", rate, "--results-dir", str(results))
    assert code == 2 and "--missing-rate" in err and "outside [0, 1)" in err
    assert not results.exists()


def test_unparseable_rate(capsys, results):
    code, err = _run(capsys, "--missing-rate", "0.1,abc", "--results-dir", str(results))
    assert code == 2 and "--missing-rate" in err


def test_unknown_yaml_key_names_file_and_key(capsys, tmp_path, results):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("dataset: synthetic\ntraining:\n  epoch: 3\n")
    code, err = _run(capsys, "--config", str(cfg), "--results-dir", str(results))
    assert code == 2 and str(cfg) in err and "training: unknown key 'epoch'" in err and "epochs" in err


def test_unknown_method_option_names_method_and_key(capsys, tmp_path, results):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("methods: [early_fusion]\nmethod_options:\n  early_fusion: {hiden: 3}\n")
    code, err = _run(capsys, "--config", str(cfg), "--results-dir", str(results))
    assert code == 2 and "method 'early_fusion' options" in err and "'hiden'" in err


def test_bad_value_type(capsys, tmp_path, results):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("training:\n  lr: fast\n")
    code, err = _run(capsys, "--config", str(cfg), "--results-dir", str(results))
    assert code == 2 and "training.lr" in err and "expected a number" in err


def test_missing_config_file(capsys, tmp_path):
    code, err = _run(capsys, "--config", str(tmp_path / "nope.yaml"))
    assert code == 2 and "nope.yaml does not exist" in err


def test_missing_data_directory_names_the_path(capsys, tmp_path, results):
    needing = [d for d in list_datasets() if get_dataset_class(d).needs_data_root]
    if not needing:
        pytest.fail("no registered dataset reads files from a data root")
    missing = tmp_path / "not-here"
    code, err = _run(capsys, "--dataset", needing[0], "--data-root", str(missing), "--results-dir", str(results))
    assert code == 2 and str(missing) in err


def test_help_lists_every_option(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--config", "--dataset", "--methods", "--missing-rate", "--pattern", "--protocol", "--seeds",
                 "--epochs", "--device", "--tracking-uri", "--results-dir", "--data-root"):
        assert flag in out


def test_run_key_changes_with_a_method_code_default(monkeypatch):
    """Resume must not reuse a run whose method would now use other (default) options."""
    import dataclasses

    from benchmark.config import load_config
    from benchmark.grid import build_grid
    from methods import get_method_class

    def keys(overrides=None):
        cfg = load_config(None, {"methods": ["late_fusion", "image_only"], **(overrides or {})})
        return {s.method: s.key() for s in build_grid(cfg, with_oracle=False)}

    before = keys()
    explicit = keys({"method_options": {"late_fusion": {"selection": "per_branch"}}})
    assert explicit["late_fusion"] == before["late_fusion"]  # explicit == default
    cls = get_method_class("late_fusion")
    changed = dataclasses.make_dataclass("Options", [("selection", str, "joint"), ("calibration", str, "temperature")],
                                         frozen=True)
    monkeypatch.setattr(cls, "Options", changed)
    after = keys()
    assert after["late_fusion"] != before["late_fusion"]
    assert after["image_only"] == before["image_only"]


def test_config_base_layers_a_variant_over_another_file(tmp_path):
    """``base:`` puts another config file underneath (relative path); a missing or circular base is
    one error naming the file."""
    from benchmark.config import load_config
    from core.errors import ConfigError
    (tmp_path / "parent.yaml").write_text("methods: [late_fusion, early_fusion]\ntraining: {max_epochs: 7, lr: 0.002}\n")
    (tmp_path / "child.yaml").write_text("base: parent.yaml\nmethods: [late_fusion]\ntraining: {patience: 2}\n")
    cfg = load_config(tmp_path / "child.yaml")
    assert cfg.methods == ("late_fusion",) and cfg.training.max_epochs == 7 and cfg.training.patience == 2
    assert cfg.training.lr == 0.002
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(ConfigError, match="includes itself"):
        load_config(tmp_path / "loop.yaml")
    (tmp_path / "orphan.yaml").write_text("base: nowhere.yaml\n")
    with pytest.raises(ConfigError, match=r"orphan.yaml: base: config file .*nowhere.yaml does not exist"):
        load_config(tmp_path / "orphan.yaml")
