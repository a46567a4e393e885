from __future__ import annotations

import numpy as np
import pytest

from fer_core.metrics import classification_report, confusion_matrix, expected_calibration_error, macro_f1, per_class


def test_known_values():
    labels = np.array([0, 0, 1, 1, 2, 2])
    preds = np.array([0, 1, 1, 1, 2, 0])
    cm = confusion_matrix(labels, preds, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    p, r, f1, s = per_class(cm)
    assert p.tolist() == pytest.approx([0.5, 2 / 3, 1.0]) and r.tolist() == pytest.approx([0.5, 1.0, 0.5])
    assert macro_f1(cm) == pytest.approx(np.mean([0.5, 0.8, 2 / 3]))


def test_ece_of_a_perfectly_calibrated_and_an_overconfident_model():
    labels = np.array([0, 1] * 50)
    calibrated = np.tile([[0.5, 0.5]], (100, 1))
    calibrated[:, 0] += 1e-9  # always predicts 0, right half the time, 50 % sure
    assert expected_calibration_error(calibrated, labels) == pytest.approx(0.0, abs=1e-6)
    sure = np.tile([[1.0, 0.0]], (100, 1))
    assert expected_calibration_error(sure, labels) == pytest.approx(0.5)


def test_report_shape_and_absent_classes():
    probs = np.eye(7)[[0, 1, 2, 3]]
    report = classification_report(probs, np.array([0, 1, 2, 4]), "test", probs_tta=probs)
    assert set(report) >= {"split", "n", "accuracy", "macro_f1", "per_class", "confusion", "ece", "tta", "accuracy_tta"}
    assert report["accuracy"] == 0.75 and report["absent_classes"] == ["happy", "sad", "surprise"]
    assert report["macro_f1"] == pytest.approx(3 / 4)  # over the 4 classes present in the labels
