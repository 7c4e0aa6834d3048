"""Self-training (0 target labels): AdaBN statistics, config checks, and a real run end to end."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from core import experiments, jobs, runs
from tests.test_experiments import _fake_run, tiny_gtsrb  # noqa: F401 - module fixture

keras = pytest.importorskip("keras")

SOURCE_CLASSES = [13, 14]


def _small_bn_model(num_classes: int = 2, channels: int = 1):
    inputs = keras.Input((32, 32, channels), name="image")
    features = keras.layers.Conv2D(3, 3, name="block1_conv")(inputs)
    features = keras.layers.BatchNormalization(name="block1_bn")(features)
    features = keras.layers.GlobalAveragePooling2D(name="pool")(features)
    features = keras.layers.Dense(4, name="fc1")(features)
    features = keras.layers.BatchNormalization(name="fc1_bn")(features)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="predictions")(features)
    return keras.Model(inputs, outputs, name="small_bn")


def test_adapt_batch_norm_gives_each_layer_the_statistics_of_its_input_on_the_new_images():
    from core.training.lenet_transfer_family import adapt_batch_norm

    keras.utils.set_random_seed(0)
    model = _small_bn_model()
    images = np.random.default_rng(0).uniform(0, 255, (70, 32, 32, 1)).astype("float32")
    # Batches of 32 do not divide 70: the last, shorter batch must count by its size.
    assert adapt_batch_norm(model, images, batch_size=32) == 2
    conv_output = keras.Model(model.inputs, model.get_layer("block1_conv").output).predict(images, verbose=0)
    bn = model.get_layer("block1_bn")
    np.testing.assert_allclose(bn.moving_mean.numpy(), conv_output.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bn.moving_variance.numpy(), conv_output.var(axis=(0, 1, 2)), rtol=1e-4)
    # Keras' own layer in training mode normalises with the batch statistics of the whole set;
    # in inference mode the adapted layer now computes the same thing.
    np.testing.assert_allclose(bn(conv_output, training=False).numpy(),
                               bn(conv_output, training=True).numpy(), atol=2e-3)
    # The second layer is updated from features that already went through the adapted first one.
    dense_output = keras.Model(model.inputs, model.get_layer("fc1").output).predict(images, verbose=0)
    np.testing.assert_allclose(model.get_layer("fc1_bn").moving_mean.numpy(), dense_output.mean(axis=0),
                               rtol=1e-4, atol=1e-4)


def _source_run(tmp_path):
    from core.training import lenet_transfer_family

    source = lenet_transfer_family.resolve_config(dict(
        experiments.source_config("synthetic-signs", epochs=1), classes=SOURCE_CLASSES))
    source_dir = _fake_run(source, val_accuracy=0.95, with_model=False)
    keras.utils.set_random_seed(0)
    _small_bn_model(len(SOURCE_CLASSES)).save(source_dir / runs.MODEL_FILE)
    return source_dir


def test_self_training_configs_are_checked(isolated_roots, tmp_path):
    from core.training import lenet_transfer_family

    source_dir = _source_run(tmp_path)
    config = dict(experiments.self_training_config(source_dir, epochs=1), classes=SOURCE_CLASSES)
    resolved = lenet_transfer_family.resolve_config(config)
    assert resolved["strategy"] == "self-training" and resolved["weights"] == f"run:{source_dir.name}"
    assert resolved["unlabelled_dataset"] == "gtsrb" and resolved["pseudo_label_threshold"] == 0.9
    assert resolved["pseudo_labels"] == "centroids"
    cases = {
        "needs an unlabelled_dataset": dict(config, unlabelled_dataset=None),
        "needs a source_run": dict(config, source_run=None),
        "whole labelled dataset": dict(config, labels_per_class=10),
        "classes must be the source's": dict(config, classes=[13]),
        "pseudo_label_threshold": dict(config, pseudo_label_threshold=1.5),
        "pseudo_labels must be one of": dict(config, pseudo_labels="kmeans"),
        "only read by strategy": dict(config, strategy="fine-tune"),
        "unknown dataset": dict(config, unlabelled_dataset="no-such-data"),
    }
    for message, bad in cases.items():
        with pytest.raises(ValueError, match=message):
            lenet_transfer_family.resolve_config(bad)


@pytest.mark.slow
def test_self_training_run_adapts_to_unlabelled_images_without_reading_their_labels(
        tiny_gtsrb, isolated_roots, tmp_path, monkeypatch):
    from core import datasets, worker
    from core.datasets.preprocess import source_image_size
    from core.training import lenet_transfer_family
    from core.training.trainer import prepare_split

    source_dir = _source_run(tmp_path)
    config = dict(experiments.self_training_config(source_dir, epochs=1), classes=SOURCE_CLASSES,
                  pseudo_label_threshold=0.0)  # every unlabelled image gets a pseudo-label
    # The labels of the unlabelled dataset are never read: scramble them where they are loaded.
    real_load = datasets.load

    def load_with_scrambled_gtsrb_labels(name, *args, **kwargs):
        split = real_load(name, *args, **kwargs)
        if name == "gtsrb":
            split = dataclasses.replace(split, labels=np.full_like(split.labels, -1))
        return split

    monkeypatch.setattr(datasets, "load", load_with_scrambled_gtsrb_labels)
    run_dir = jobs.create_job(config)
    assert worker.run(run_dir) == runs.COMPLETED, runs.read_status(run_dir).get("error")
    results = runs.read_results(run_dir)
    resolved = runs.read_config(run_dir)
    unlabelled = prepare_split(real_load("gtsrb", "train", source_image_size(resolved["preprocessing"]),
                                         seed=resolved["seed"]), resolved["preprocessing"]).images
    assert results["unlabelled_images"] == len(unlabelled) > 0
    assert results["pseudo_labelled_images"] == len(unlabelled)  # threshold 0 keeps them all
    assert results["num_train_images"] == 2 * 600 + len(unlabelled)  # drawn signs + pseudo-labelled
    # The saved model's first batch norm holds the statistics of its input on the real images.
    saved = keras.saving.load_model(run_dir / runs.MODEL_FILE, compile=False)
    conv_output = keras.Model(saved.inputs, saved.get_layer("block1_conv").output).predict(unlabelled, verbose=0)
    np.testing.assert_allclose(saved.get_layer("block1_bn").moving_mean.numpy(),
                               conv_output.mean(axis=(0, 1, 2)), rtol=1e-3, atol=1e-3)
    assert lenet_transfer_family.SELF_TRAINING == resolved["strategy"]
    # Scored on real images like a synthetic-only source, and listed as what it is.
    monkeypatch.setattr(datasets, "load", real_load)
    scores = experiments.score_on_real(run_dir)
    runs.write_results(run_dir, {**results, **scores})
    rows = {row["run_id"]: row for row in experiments.synthetic_only_results(runs.list_runs())}
    assert rows[run_dir.name]["method"] == "self-training on unlabelled real images"
    assert rows[run_dir.name]["real_val_accuracy"] == scores["real_val_accuracy"]
    assert rows[run_dir.name]["pseudo_labels"] == "centroids"
    assert experiments.few_shot_results(runs.list_runs()) == []  # not a few-shot arm


def test_cli_refuses_self_training_with_real_labels(capsys):
    status = experiments.main(["few-shot", "--source", "synthetic-signs", "--labels-per-class", "10",
                               "--self-train"])
    assert status == experiments.EXIT_USAGE
    assert "--labels-per-class 0" in capsys.readouterr().err


def test_self_training_rounds_chain_each_round_from_the_previous_one(isolated_roots, tmp_path, monkeypatch):
    source_dir = tmp_path / "source-run"
    submitted = []

    def fake_foreground(config, runs_root, log):
        submitted.append(config)
        run_dir = _fake_run(config, with_model=False)
        runs.write_results(run_dir, {"test_accuracy": 0.5})
        return run_dir

    real_val = iter([0.80, 0.83, 0.84])
    monkeypatch.setattr(experiments, "run_synthetic_only",
                        lambda *args, **kwargs: (source_dir, {"real_val_accuracy": 0.74}))
    monkeypatch.setattr(experiments, "_run_foreground", fake_foreground)
    monkeypatch.setattr(experiments, "score_on_real",
                        lambda run_dir, **kwargs: {"real_val_accuracy": next(real_val), "real_val_images": 4290})
    source, source_scores, adapted = experiments.run_self_training(rounds=3, epochs=2, seed=5,
                                                                   log=lambda text: None)
    assert (source, source_scores) == (source_dir, {"real_val_accuracy": 0.74})
    assert [config["source_run"] for config in submitted] == [
        str(source_dir), str(adapted[0][0]), str(adapted[1][0])]
    assert all(config["strategy"] == "self-training" and config["epochs"] == 2 and config["seed"] == 5
               for config in submitted)
    assert [scores["real_val_accuracy"] for _, scores in adapted] == [0.80, 0.83, 0.84]
    # Each round's scores are merged into its own results.json, beside what training wrote.
    assert runs.read_results(adapted[2][0]) == {"test_accuracy": 0.5, "real_val_accuracy": 0.84,
                                                 "real_val_images": 4290}
    # The Compare page's table names each round after the first.
    methods = {row["run_id"]: row["method"] for row in experiments.synthetic_only_results(runs.list_runs())}
    assert [methods[run_dir.name] for run_dir, _ in adapted] == [
        "self-training on unlabelled real images",
        "self-training on unlabelled real images (round 2)",
        "self-training on unlabelled real images (round 3)"]
    with pytest.raises(ValueError, match="rounds must be a positive int, received 0"):
        experiments.run_self_training(rounds=0)


def test_cli_checks_self_training_rounds(capsys):
    status = experiments.main(["few-shot", "--source", "synthetic-signs", "--labels-per-class", "0",
                               "--self-train-rounds", "2"])
    assert status == experiments.EXIT_USAGE
    assert "--self-train-rounds needs --self-train" in capsys.readouterr().err
    status = experiments.main(["few-shot", "--source", "synthetic-signs", "--labels-per-class", "0",
                               "--self-train", "--self-train-rounds", "0"])
    assert status == experiments.EXIT_USAGE
    assert "self-training rounds must be a positive int, received 0" in capsys.readouterr().err


def test_centroid_pseudo_labels_correct_a_classifier_biased_against_one_cluster():
    """Two tight clusters; the classifier takes both for class 0 (the second only at 0.6). The
    probability-weighted centroid of class 1 lies in the second cluster, so the nearest-centroid
    labels give that cluster class 1, and confidently; the classifier's labels cannot."""
    from core.training.pseudo_labels import centroid_pseudo_labels, select_pseudo_labels

    rng = np.random.default_rng(0)
    first = np.array([4.0, 0.0, 0.0]) + 0.05 * rng.standard_normal((30, 3))
    second = np.array([0.0, 4.0, 0.0]) + 0.05 * rng.standard_normal((20, 3))
    features = np.concatenate([first, second])
    probabilities = np.concatenate([np.tile([0.9, 0.1, 0.0], (30, 1)), np.tile([0.6, 0.4, 0.0], (20, 1))])
    labels, confidence = centroid_pseudo_labels(features, probabilities)
    assert labels.tolist() == [0] * 30 + [1] * 20
    assert confidence.min() > 0.99  # each point is far nearer its own centroid (temperature 0.05)
    keep, classifier_labels = select_pseudo_labels("classifier", probabilities, threshold=0.9)
    assert classifier_labels.tolist() == [0] * 50 and keep.tolist() == [True] * 30 + [False] * 20
    keep, centroid_labels = select_pseudo_labels("centroids", probabilities, features, threshold=0.9)
    assert keep.all() and centroid_labels.tolist() == labels.tolist()
    # Class 2 has no probability anywhere: no centroid, no image.
    assert 2 not in labels
    with pytest.raises(ValueError, match="pseudo_labels must be one of"):
        select_pseudo_labels("kmeans", probabilities, features)
    with pytest.raises(ValueError, match="needs the images' features"):
        select_pseudo_labels("centroids", probabilities)
    with pytest.raises(ValueError, match=r"same N, received shapes \(50, 3\) and \(49, 3\)"):
        centroid_pseudo_labels(features, probabilities[:49])
    with pytest.raises(ValueError, match="passes must be an int >= 1, received 0"):
        centroid_pseudo_labels(features, probabilities, passes=0)


def test_cli_checks_pseudo_labels_needs_self_training(capsys):
    status = experiments.main(["few-shot", "--source", "synthetic-signs", "--labels-per-class", "0",
                               "--pseudo-labels", "classifier"])
    assert status == experiments.EXIT_USAGE
    assert "--pseudo-labels needs --self-train" in capsys.readouterr().err
