"""Transferability scores: LogME, LEEP and H-score against hand-computed cases and the papers'
properties; ``score`` on real (weights=None / tiny) Keras models; the CLI in a subprocess."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core import transferability as tr

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_WEIGHTS = REPO_ROOT.parent / "shared" / "weights" / "imagenet"


def _clusters(separation: float, seed: int = 0, per_class: int = 40, dims: int = 6, classes: int = 3):
    """Gaussian clusters whose centres are ``separation`` apart along the first axes."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), per_class)
    centres = np.eye(classes, dims) * separation
    features = centres[labels] + rng.normal(size=(len(labels), dims))
    return features, labels


# --- LogME --------------------------------------------------------------------------------------

def test_logme_evidence_matches_the_hand_computed_one_sample_case():
    # n = D = 1, f = 1, y = 1, alpha = beta = 1: y ~ N(0, 1/beta + f^2/alpha) = N(0, 2), so
    # log p(y) = -1/2 log(2 pi * 2) - 1^2 / (2 * 2) = -1/2 log(4 pi) - 1/4.
    value = tr.logme_evidence(np.array([[1.0]]), np.array([1.0]), alpha=1.0, beta=1.0)
    assert value == pytest.approx(-0.5 * math.log(4 * math.pi) - 0.25, abs=1e-12)


def test_logme_evidence_is_the_gaussian_marginal_likelihood_of_the_paper():
    # Eq. (2): p(y | F, alpha, beta) = N(y; 0, beta^-1 I + alpha^-1 F F^T), computed directly.
    rng = np.random.default_rng(3)
    features, target = rng.normal(size=(7, 3)), rng.normal(size=7)
    alpha, beta = 0.7, 2.5
    covariance = np.eye(7) / beta + features @ features.T / alpha
    _, log_det = np.linalg.slogdet(covariance)
    direct = -0.5 * (7 * math.log(2 * math.pi) + log_det + target @ np.linalg.solve(covariance, target))
    assert tr.logme_evidence(features, target, alpha, beta) == pytest.approx(direct, rel=1e-10)


def test_logme_fixed_point_reaches_the_maximum_evidence_over_alpha_and_beta():
    features, labels = _clusters(2.0, seed=1, per_class=15, dims=4, classes=2)
    target = (labels == 1).astype(float)
    per_sample, alpha, beta = tr.logme_fit(features, target)
    assert per_sample * len(target) == pytest.approx(tr.logme_evidence(features, target, alpha, beta), rel=1e-9)
    grid = [tr.logme_evidence(features, target, alpha * a, beta * b)
            for a in (0.25, 0.5, 0.8, 1.25, 2.0, 4.0) for b in (0.25, 0.5, 0.8, 1.25, 2.0, 4.0)]
    assert per_sample * len(target) >= max(grid) - 1e-3


def test_logme_rises_when_features_are_more_linearly_separable():
    scores = [tr.logme(*_clusters(separation)) for separation in (0.0, 1.0, 2.0, 4.0)]
    assert scores == sorted(scores)
    assert scores[-1] - scores[0] > 0.3


def test_logme_handles_more_dimensions_than_samples():
    rng = np.random.default_rng(0)
    labels = np.array([0, 1] * 5)
    informative = rng.normal(size=(10, 50)) + labels[:, None] * 3.0
    noise = rng.normal(size=(10, 50))
    assert tr.logme(informative, labels) > tr.logme(noise, labels)


# --- LEEP ---------------------------------------------------------------------------------------

def test_leep_matches_the_hand_computed_case():
    # P(y, z): y=0 -> [0.5, 0], y=1 -> [0.125, 0.375]; P(z) = [0.625, 0.375];
    # P(y | z0) = [0.8, 0.2], P(y | z1) = [0, 1]. Expected predictor: 0.8, 0.8, 1.0 and
    # 0.5 * 0.2 + 0.5 * 1 = 0.6, so LEEP = (2 log 0.8 + log 1 + log 0.6) / 4.
    probabilities = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    labels = np.array([0, 0, 1, 1])
    expected = (2 * math.log(0.8) + math.log(0.6)) / 4
    assert tr.leep(probabilities, labels) == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(-0.239278, abs=1e-6)


def test_leep_with_one_hot_source_outputs_equals_the_negative_conditional_entropy():
    # Nguyen et al., section 4: for deterministic source outputs LEEP reduces to NCE (-H(Y | Z)).
    rng = np.random.default_rng(5)
    source_labels = rng.integers(0, 4, size=60)
    labels = (source_labels + (rng.random(60) < 0.3)) % 3
    one_hot = np.eye(4)[source_labels]
    assert tr.leep(one_hot, labels) == pytest.approx(tr.negative_conditional_entropy(source_labels, labels), abs=1e-12)


def test_leep_is_zero_when_source_classes_determine_the_labels_and_lower_for_uninformative_ones():
    labels = np.array([0, 1, 2, 0, 1, 2])
    informative = np.eye(3)[[2, 0, 1, 2, 0, 1]]  # a relabelling of the targets
    uniform = np.full((6, 3), 1 / 3)
    assert tr.leep(informative, labels) == pytest.approx(0.0, abs=1e-12)
    assert tr.leep(uniform, labels) == pytest.approx(math.log(1 / 3), abs=1e-12)  # the class prior


def test_leep_refuses_rows_that_are_not_probabilities():
    with pytest.raises(ValueError, match="sum to 1"):
        tr.leep(np.array([[2.0, 0.0], [0.0, 1.0]]), np.array([0, 1]))


# --- H-score ------------------------------------------------------------------------------------

def test_hscore_matches_the_hand_computed_case():
    # f = 0, 2, 4, 6 (labels 0, 0, 1, 1): var f = (9 + 1 + 1 + 9) / 4 = 5; E[f | y] = 1, 1, 5, 5
    # with variance 4; H = 4 / 5.
    assert tr.hscore(np.array([[0.0], [2.0], [4.0], [6.0]]), np.array([0, 0, 1, 1])) == pytest.approx(0.8)


def test_hscore_is_invariant_to_invertible_linear_maps_and_maximal_for_class_determined_features():
    features, labels = _clusters(1.5, seed=2)
    transform = np.random.default_rng(7).normal(size=(6, 6)) + 3 * np.eye(6)
    assert tr.hscore(features @ transform, labels) == pytest.approx(tr.hscore(features, labels), rel=1e-8)
    determined = np.eye(3, 6)[labels] * 4.0  # f is a function of y: cov(f) = cov(E[f | y])
    assert tr.hscore(determined, labels) == pytest.approx(2.0, rel=1e-8)  # = classes - 1
    assert tr.hscore(*_clusters(3.0)) > tr.hscore(*_clusters(0.5))


# --- helpers ------------------------------------------------------------------------------------

def test_parse_source_accepts_the_three_kinds_and_names_what_is_expected():
    assert tr.parse_source("imagenet:mobilenetv2") == tr.Source("imagenet", "mobilenetv2")
    assert tr.parse_source("random:vgg16") == tr.Source("random", "vgg16")
    assert tr.parse_source("run:20260101-abc") == tr.Source("run", "20260101-abc")
    with pytest.raises(ValueError, match="expected one of"):
        tr.parse_source("imagenet:resnet50")
    with pytest.raises(ValueError, match="received 'weights.h5'"):
        tr.parse_source("weights.h5")


def test_spearman_and_normalisation_on_exact_values():
    assert tr.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert tr.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # d = (0, 0, 1, -1): rho = 1 - 6 * 2 / (4 * 15) = 0.8
    assert tr.spearman([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(0.8)


def test_chance_scores_and_normalisation_on_exact_values():
    # Balanced 2 classes: LogME chance = 1/2 log 2 - 1/2 log 2pi - 1/2 (the all-zero features'
    # evidence, checked against logme itself), LEEP chance = log 1/2.
    logme_chance = 0.5 * math.log(2) - 0.5 * math.log(2 * math.pi) - 0.5
    assert tr.chance_score("logme", [0.5, 0.5]) == pytest.approx(logme_chance)
    assert tr.chance_score("logme", [0.5, 0.5]) == pytest.approx(tr.logme(np.zeros((8, 3)), np.array([0, 1] * 4)), abs=1e-6)
    assert tr.chance_score("leep", [0.25, 0.75]) == pytest.approx(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert tr.normalised_score("logme", logme_chance, [0.5, 0.5]) == 0.0
    assert tr.normalised_score("logme", logme_chance + math.log(2), [0.5, 0.5]) == pytest.approx(0.5)
    assert tr.normalised_score("leep", math.log(0.75), [0.5, 0.5]) == pytest.approx(0.5)
    assert tr.normalised_score("leep", -5.0, [0.5, 0.5]) == 0.0
    assert tr.normalised_score("hscore", 1.0, [0.2, 0.3, 0.5]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="class_fractions"):
        tr.chance_score("leep", [1.0])


def test_pool_features_flattens_small_maps_and_averages_large_ones():
    small = np.arange(2 * 2 * 2 * 3, dtype=np.float32).reshape(2, 2, 2, 3)
    assert tr.pool_features(small).shape == (2, 12)
    large = np.ones((2, 4, 4, 200), dtype=np.float32)
    pooled = tr.pool_features(large)
    assert pooled.shape == (2, 200) and float(pooled[0, 0]) == 1.0


# --- score() on real Keras models (weights=None, tiny inputs) ------------------------------------

@pytest.mark.slow
def test_random_control_scores_through_the_bottleneck_cache_and_caches_the_score(isolated_roots):
    details = tr.score_details("random:mobilenetv2", "synthetic-signs", "logme", max_images=24,
                               image_size=32)
    assert details["num_images"] == 24 and details["dims"] == 1280 and not details["cached"]
    assert math.isfinite(details["score"])
    bottleneck = isolated_roots["data"] / "cache" / "bottleneck"
    assert len(list(bottleneck.glob("*/train.npy"))) == 1
    again = tr.score_details("random:mobilenetv2", "synthetic-signs", "logme", max_images=24,
                             image_size=32)
    assert again["cached"] and again["score"] == details["score"]
    assert tr.score("random:mobilenetv2", "synthetic-signs", "logme", max_images=24, image_size=32,
                    use_cache=False) == pytest.approx(details["score"], rel=1e-6)


def test_imagenet_source_without_installed_weights_says_where_they_are_expected(isolated_roots):
    with pytest.raises(ValueError, match="no no-top ImageNet weights for mobilenet are installed. Offline"):
        tr.score("imagenet:mobilenet", "synthetic-signs", max_images=8)


@pytest.mark.slow
def test_leep_with_only_no_top_weights_says_so(isolated_roots):
    import keras

    from core import weights

    base = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3))
    base.save_weights(isolated_roots["data"] / "random_notop.weights.h5")
    weights.import_file("mobilenetv2", isolated_roots["data"] / "random_notop.weights.h5")
    with pytest.raises(ValueError, match="only no-top weights are installed"):
        tr.score("imagenet:mobilenetv2", "synthetic-signs", "leep", max_images=8, image_size=32)
    assert math.isfinite(tr.score("imagenet:mobilenetv2", "synthetic-signs", "hscore", max_images=8,
                                  image_size=32))


def _finished_lenet_run(runs_root: Path) -> str:
    """A completed run folder holding a small real LeNet (grayscale 32 px, 43 classes)."""
    from core import runs
    from core.models import lenet

    model = lenet.build_lenet(43, (32, 32, 1), conv_filters=(4, 8), dense_units=(16,), name="source")
    run_dir = runs.create_run({"model": "lenet5", "dataset": "synthetic-signs",
                               "preprocessing": {"image_size": 32, "color": "grayscale",
                                                 "equalization": "none", "blur": 0}}, runs_root)
    model.save(run_dir / runs.MODEL_FILE)
    runs.write_class_names(run_dir, [f"sign {index}" for index in range(43)])
    runs.write_status(run_dir, state=runs.COMPLETED)
    return run_dir.name


@pytest.mark.slow
def test_run_source_uses_its_last_feature_map_and_its_own_softmax_for_leep(isolated_roots):
    run_id = _finished_lenet_run(isolated_roots["runs"])
    features, labels = tr.source_outputs(f"run:{run_id}", "synthetic-signs", metric="logme",
                                         max_images=43)
    assert features.ndim == 2 and len(features) == len(labels) == 43
    probabilities, _ = tr.source_outputs(f"run:{run_id}", "synthetic-signs", metric="leep",
                                         max_images=43)
    assert probabilities.shape == (43, 43)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    assert f"run:{run_id}" in tr.available_sources()


@pytest.mark.slow
def test_cli_prints_one_tab_separated_line_per_source_best_first(isolated_roots):
    environment = {**os.environ, "TLLAB_DATA_DIR": str(isolated_roots["data"]),
                   "TLLAB_RUNS_DIR": str(isolated_roots["runs"])}
    completed = subprocess.run(
        [sys.executable, "-m", "core.experiments", "transferability", "--dataset", "synthetic-signs",
         "--sources", "random:mobilenetv2,random:mobilenet", "--metric", "hscore",
         "--max-images", "16", "--image-size", "32"],
        cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=240)
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.strip().splitlines()
    assert len(lines) == 2
    parsed = [line.split("\t") for line in lines]
    assert {fields[0] for fields in parsed} == {"random:mobilenetv2", "random:mobilenet"}
    assert all(fields[1] == "hscore" and len(fields) == 4 for fields in parsed)
    assert float(parsed[0][2]) >= float(parsed[1][2])


def test_cli_refuses_an_unknown_source_with_usage_status(isolated_roots):
    completed = subprocess.run(
        [sys.executable, "-m", "core.experiments", "transferability", "--dataset", "synthetic-signs",
         "--sources", "imagenet:resnet"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2
    assert "expected one of" in completed.stderr


# --- the real shared weights --------------------------------------------------------------------

def test_real_imagenet_mobilenetv2_beats_the_random_control_on_cat_and_dog_photos(isolated_roots):
    if not SHARED_WEIGHTS.is_dir():
        pytest.skip(f"{SHARED_WEIGHTS} is absent: the real ImageNet weights only exist on the developers' machines")
    from core import datasets
    from tests.conftest import shared_file

    archive = shared_file("dogs-vs-cats", "train-2000.zip")
    datasets.get("dogs-vs-cats", [archive])
    from core import weights

    weights.import_file("mobilenetv2", SHARED_WEIGHTS / "mobilenet_v2_1.0_224_imagenet_no_top.weights.h5")
    imagenet = tr.score("imagenet:mobilenetv2", "dogs-vs-cats", "logme", max_images=40, image_size=96)
    control = tr.score("random:mobilenetv2", "dogs-vs-cats", "logme", max_images=40, image_size=96)
    assert imagenet > control + 0.1


def test_logme_of_constant_zero_features_is_finite_and_below_informative_features():
    labels = np.array([0, 1] * 6)
    zero = tr.logme(np.zeros((12, 5)), labels)
    assert math.isfinite(zero)
    # With F = 0 the evidence is that of y ~ N(0, 1/beta) at beta = n / ||y||^2 = 2:
    # 1/2 log 2 - 1/2 log 2 pi - 1/2 per sample, for both one-hot columns.
    assert zero == pytest.approx(0.5 * math.log(2) - 0.5 * math.log(2 * math.pi) - 0.5, abs=1e-6)
    assert tr.logme(np.eye(2, 5)[labels] + 0.01, labels) > zero


def test_hscore_saturates_with_more_dimensions_than_samples_unless_the_covariance_is_shrunk():
    rng = np.random.default_rng(4)
    labels = np.array([0, 1] * 10)
    noise = rng.normal(size=(20, 40))
    informative = noise + labels[:, None] * 1.5
    # The paper's formula: a singular cov(f) makes every source score classes - 1 = 1.
    assert tr.hscore(noise, labels) == pytest.approx(1.0, abs=1e-6)
    assert tr.hscore(informative, labels) == pytest.approx(1.0, abs=1e-6)
    shrunk_noise = tr.hscore(noise, labels, shrinkage=True)
    shrunk_informative = tr.hscore(informative, labels, shrinkage=True)
    assert shrunk_informative > shrunk_noise + 0.2
    assert 0.0 < shrunk_noise < shrunk_informative <= 1.0


def test_logme_does_not_depend_on_the_scale_of_the_features():
    # The evidence maximised over alpha is unchanged by F -> cF (alpha absorbs c^2): a random
    # network's ~1e-11 activations must score like the same features at unit scale.
    features, labels = _clusters(1.0, seed=6)
    assert tr.logme(features * 1e-11, labels) == pytest.approx(tr.logme(features, labels), rel=1e-6)
    assert tr.logme(features * 1e6, labels) == pytest.approx(tr.logme(features, labels), rel=1e-6)


def test_source_of_run_maps_run_configs_to_score_sources(isolated_roots):
    assert tr.source_of_run({"model": "mobilenetv2", "weights": "imagenet"}) == "imagenet:mobilenetv2"
    assert tr.source_of_run({"model": "vgg16", "strategy": "scratch", "weights": "none"}) == "imagenet:vgg16"
    assert tr.source_of_run({"model": "mobilenet", "weights": "run:20260101-x"}) == "run:20260101-x"
    assert tr.source_of_run({"model": "lenet5-transfer", "source_run": "/runs/20260102-y"}) == "run:20260102-y"
    assert tr.source_of_run({"model": "lenet5-transfer", "role": "source"}) is None
    assert tr.source_of_run({"model": "lenet5"}) is None
    # A weights file that is not the installed ImageNet file (nothing is installed here) has no
    # score source: it is not placed on the quadrant as ImageNet.
    assert tr.source_of_run({"model": "mobilenetv2", "weights": "/data/random.weights.h5",
                             "weights_sha256": "ab12"}) is None
