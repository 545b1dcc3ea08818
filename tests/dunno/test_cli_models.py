"""Any model on the command line (checkpoint, TorchScript, torch.export, --model factory) and
the model-vs-data check before any work: through the CLI and through Python."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dunno.classify import train_classifier
from dunno.cli import main
from dunno.models import load_any_model, save_model

pytestmark = pytest.mark.one_thread

FACTORY_SOURCE = '''
from dunno import nets


def build():
    return nets.create("lenet5", 1, 10, input_size=(8, 8))
'''


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    """A lenet5 trained one epoch on 8x8 digits, in every file kind."""
    root = tmp_path_factory.mktemp("digits_model")
    result = train_classifier(data="digits", epochs=1, out=root / "run",
                              device="cpu")
    net = result.model
    x = torch.rand(4, 1, 8, 8)
    save_model(net, root / "model_ts.pt", x)
    save_model(net, root / "model.pt2", x)
    torch.save(net.state_dict(), root / "weights.pt")
    (root / "user_digits_net.py").write_text(FACTORY_SOURCE)
    return {"checkpoint": root / "run" / "model.pt", "torchscript": root / "model_ts.pt",
            "export": root / "model.pt2", "factory": root / "user_digits_net.py",
            "weights": root / "weights.pt", "run": root / "run", "net": net}


@pytest.fixture(scope="module")
def mnist_like(tmp_path_factory):
    """A synthetic 28x28, 10-class .npz (MNIST-shaped)."""
    path = tmp_path_factory.mktemp("mnist_like") / "mine28.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.integers(0, 256, (300, 28, 28), dtype=np.uint8),
             y=np.arange(300) % 10)
    return path


def _model_args(models, kind, flag="--checkpoint"):
    if kind == "factory":
        return ["--model", f"{models['factory']}:build", "--weights", str(models["weights"])]
    return [flag, str(models[kind])]


def test_the_checkpoint_records_input_shape_and_class_count(digits_model):
    from dunno.checkpoints import load_checkpoint

    meta = load_checkpoint(digits_model["checkpoint"]).meta
    assert meta["input_shape"] == [1, 8, 8] and meta["num_classes"] == 10
    assert meta["input_range"] == [0.0, 1.0]  # digits' 0..16 levels scaled to [0, 1]


def test_calibrate_refuses_data_on_another_scale(digits_model, tmp_path, capsys):
    from dunno.data import load_dataset

    test = load_dataset("digits", "test")
    path = tmp_path / "digits255.npz"
    np.savez(path, x_train=test.x.numpy()[:60] * 255, y_train=test.y.numpy()[:60],
             x_val=test.x.numpy()[60:120] * 255, y_val=test.y.numpy()[60:120],
             x_test=test.x.numpy()[120:] * 255, y_test=test.y.numpy()[120:])
    code = main(["calibrate", "--checkpoint", str(digits_model["checkpoint"]), "--data",
                 str(path), "--out", str(tmp_path / "cal"), "--device", "cpu", "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "reach |x| = 255" in err and "trained on ([0, 1], recorded in its checkpoint)" in err
    assert not (tmp_path / "cal" / "calibration.json").exists()


@pytest.mark.parametrize("kind", ["checkpoint", "torchscript", "export", "factory"])
def test_calibrate_takes_every_model_kind(digits_model, kind, tmp_path, capsys):
    out = tmp_path / "cal"
    assert main(["calibrate", *_model_args(digits_model, kind), "--data", "digits",
                 "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    assert (out / "calibration.json").exists()
    capsys.readouterr()


@pytest.mark.parametrize("kind", ["checkpoint", "torchscript", "export", "factory"])
def test_ood_takes_every_model_kind(digits_model, kind, tmp_path, capsys):
    assert main(["ood", *_model_args(digits_model, kind), "--in", "digits:classes=0-9",
                 "--out", "gaussian-noise", "--detectors", "msp,energy",
                 "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "msp" in text and "energy" in text


def test_the_loaded_kinds_give_the_same_logits(digits_model):
    x = torch.rand(6, 1, 8, 8)
    expected = digits_model["net"].eval()(x)
    for kind in ("checkpoint", "torchscript", "export"):
        torch.testing.assert_close(load_any_model(digits_model[kind])(x), expected)
    factory = load_any_model(model=f"{digits_model['factory']}:build",
                             weights=digits_model["weights"])
    torch.testing.assert_close(factory(x), expected)


@pytest.mark.parametrize("kind", ["checkpoint", "torchscript", "export", "factory"])
def test_an_8x8_model_on_28x28_data_is_refused_by_calibrate_and_ood(
        digits_model, mnist_like, kind, tmp_path, capsys):
    args = _model_args(digits_model, kind)
    assert main(["calibrate", *args, "--data", str(mnist_like), "--out", str(tmp_path / "c"),
                 "--device", "cpu", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "run_calibration" in err and "(1, 28, 28)" in err
    if kind != "factory":  # the factory's model carries no record; its config does
        assert "(1, 8, 8)" in err
    assert not (tmp_path / "c" / "calibration.json").exists()  # refused before any work
    assert main(["ood", *args, "--in", str(mnist_like), "--out", "gaussian-noise",
                 "--detectors", "msp", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "run_ood" in err and "(1, 28, 28)" in err and "Traceback" not in err


def test_python_entry_points_refuse_the_mismatch(digits_model, mnist_like):
    from uncertainty.calibration import run_calibration
    from uncertainty.ood import run_ood

    model = load_any_model(digits_model["checkpoint"])
    with pytest.raises(ValueError, match=r"run_calibration: the model was trained for inputs "
                                         r"of shape \(1, 8, 8\).*\(1, 28, 28\)"):
        run_calibration(model, str(mnist_like))
    with pytest.raises(ValueError, match=r"run_ood: the model was trained for inputs of shape "
                                         r"\(1, 8, 8\).*\(1, 28, 28\)"):
        run_ood(model, str(mnist_like), "gaussian-noise", "msp")
    with pytest.raises(ValueError, match=r"run_calibration: the model outputs 10 logits per "
                                         r"example, but the data 'digits:classes=0-4' has 5"):
        run_calibration(model, "digits:classes=0-4")


def test_a_real_mnist_run_of_the_digits_model_is_refused(digits_model, data_dir, capsys):
    assert main(["calibrate", "--checkpoint", str(digits_model["checkpoint"]), "--data",
                 "mnist", "--data-dir", str(data_dir), "--device", "cpu", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "(1, 8, 8)" in err and "(1, 28, 28)" in err


def test_compiled_models_refuse_feature_detectors_and_layers(digits_model, capsys):
    for kind in ("torchscript", "export"):
        args = ["ood", "--checkpoint", str(digits_model[kind]), "--in", "digits",
                "--out", "gaussian-noise", "--device", "cpu"]
        assert main([*args, "--detectors", "knn"]) == 2
        err = capsys.readouterr().err
        assert "['knn'] need penultimate features" in err and "msp" in err
        assert main([*args, "--detectors", "msp", "--layer", "fc1"]) == 2
        err = capsys.readouterr().err
        assert "'layer' parameter (--layer) 'fc1'" in err
        # "all" runs every detector that applies: the logit-based ones
        assert main([*args, "--detectors", "all", "--param", "odin.epsilon=0"]) == 0
        text = capsys.readouterr().out
        assert "energy" in text and "knn" not in text


def test_the_model_options_are_checked(digits_model, capsys):
    base = ["calibrate", "--data", "digits", "--device", "cpu"]
    cases = [
        ([], "A classifier is needed: --checkpoint FILE, or --model"),
        (["--checkpoint", str(digits_model["checkpoint"]), "--model", "a:b"],
         "not both. Got --checkpoint"),
        (["--checkpoint", str(digits_model["checkpoint"]), "--weights", "w.pt"],
         "--weights and --model-option go with --model"),
        (["--model", f"{digits_model['factory']}:build"], "needs --weights FILE"),
        (["--model", "nocolon", "--weights", str(digits_model["weights"])],
         "must look like package.module:factory"),
        (["--model", f"{digits_model['factory']}:build", "--weights",
          str(digits_model["torchscript"])], "is a torchscript file, which is a whole model"),
        (["--checkpoint", str(digits_model["weights"])], "is not a dunno checkpoint"),
    ]
    for extra, message in cases:
        assert main([*base, *extra]) == 2, extra
        assert message in capsys.readouterr().err, extra


def test_gan_eval_refuses_a_classifier_without_features(digits_model, tmp_path, capsys):
    # the classifier is loaded and checked first, before the GAN checkpoint is read
    for kind in ("torchscript", "export"):
        assert main(["gan", "eval", "--checkpoint", str(tmp_path / "gan.pt"), "--classifier",
                     str(digits_model[kind]), "-n", "50", "--device", "cpu"]) == 2
        assert "has no features(x) method" in capsys.readouterr().err


def test_resume_on_other_data_is_refused_before_any_epoch(digits_model, mnist_like, capsys):
    run = digits_model["run"]
    assert (run / "training_state.pt").exists()
    code = main(["train", "classifier", "--data", str(mnist_like), "--epochs", "2",
                 "--out", str(run), "--resume", "--device", "cpu", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert "input_shape: [1, 8, 8] there, [1, 28, 28] now" in err


def test_ensemble_resume_on_replaced_data_is_refused(tmp_path):
    """The same spec (a path) whose file now holds 28x28 images: the finished member is
    checked against the data before it is reused."""
    from dunno.ensemble import train_ensemble

    rng = np.random.default_rng(0)
    path = tmp_path / "mine.npz"
    np.savez(path, x=rng.random((200, 8, 8), dtype=np.float32), y=np.arange(200) % 10)
    train_ensemble(num_members=1, data=str(path), epochs=1, out=tmp_path / "ens",
                   device="cpu")
    np.savez(path, x=rng.random((200, 28, 28), dtype=np.float32), y=np.arange(200) % 10)
    with pytest.raises(ValueError, match=r"train_ensemble \(member 0\): the model was trained "
                                         r"for inputs of shape \(1, 8, 8\).*\(1, 28, 28\)"):
        train_ensemble(num_members=1, data=str(path), epochs=1, out=tmp_path / "ens",
                       resume=True, device="cpu")
