import copy
import json

import pytest

from diabetes_regression.parameters import (DEFAULT_PATH, ParametersError,
                                            ValidationParameters, load_parameters,
                                            parse_parameters)

GOOD = json.loads(DEFAULT_PATH.read_text())


def test_the_template_parameters_load():
    parameters = load_parameters()
    assert parameters.training == {"alpha": 0.5}
    assert parameters.evaluation.metric == "mse"
    assert parameters.evaluation.higher_is_better is False
    assert "mse" in parameters.registration_tags
    assert len(parameters.scoring.sample["data"][0]) == 10


def changed(path, value):
    document = copy.deepcopy(GOOD)
    *parents, last = path
    node = document
    for key in parents:
        node = node[key]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return document


@pytest.mark.parametrize("path, value, message", [
    (["training"], KeyError, "section 'training' is missing"),
    (["evaluation"], [], "evaluation must be a JSON object"),
    (["evaluation", "metric"], "", "evaluation.metric"),
    (["evaluation", "higher_is_better"], "yes", "evaluation.higher_is_better"),
    (["evaluation", "min_improvement"], -1, "min_improvement must be a number >= 0"),
    (["registration", "tags"], "mse", "registration.tags"),
    (["scoring", "sample"], {"rows": []}, "scoring.sample"),
    (["scoring", "max_rows"], 0, "scoring.max_rows"),
])
def test_bad_sections_are_named(path, value, message):
    with pytest.raises(ParametersError, match=message):
        parse_parameters(changed(path, value))


def test_malformed_json_names_the_file(tmp_path):
    path = tmp_path / "parameters.json"
    path.write_text('{"training": {"alpha": 0.5},')
    with pytest.raises(ParametersError, match=f"{path}: not valid JSON"):
        load_parameters(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ParametersError, match="file not found"):
        load_parameters(tmp_path / "nope.json")


def test_document_must_be_an_object(tmp_path):
    path = tmp_path / "parameters.json"
    path.write_text("[1, 2]")
    with pytest.raises(ParametersError, match="must be a JSON object"):
        load_parameters(path)


def test_the_validation_rules_load():
    rules = load_parameters().validation
    assert (rules.min_rows, rules.shift.statistic, rules.shift.action) == (20, "psi", "warn")


def test_without_a_validation_section_the_defaults_apply():
    assert parse_parameters(changed(["validation"], KeyError)).validation \
        == ValidationParameters()


@pytest.mark.parametrize("path, value, message", [
    (["validation"], [], "validation must be a JSON object"),
    (["validation", "min_row"], 5, "validation has unknown key\\(s\\) min_row"),
    (["validation", "min_rows"], 0, "validation.min_rows must be a whole number >= 1"),
    (["validation", "min_rows"], 2.5, "validation.min_rows"),
    (["validation", "min_target_std"], -1, "validation.min_target_std must be a number >= 0"),
    (["validation", "max_target_correlation"], 0, "validation.max_target_correlation"),
    (["validation", "max_target_correlation"], 1.5, "validation.max_target_correlation"),
    (["validation", "shift"], "psi", "validation.shift must be a JSON object"),
    (["validation", "shift", "statistic"], "chi2", "validation.shift.statistic must be one of"),
    (["validation", "shift", "threshold"], 0, "validation.shift.threshold must be a number > 0"),
    (["validation", "shift", "threshold"], True, "validation.shift.threshold"),
    (["validation", "shift", "bins"], 1, "validation.shift.bins must be a whole number >= 2"),
    (["validation", "shift", "action"], "stop", "validation.shift.action must be one of warn"),
    (["validation", "shift", "limit"], 1, "validation.shift has unknown key\\(s\\) limit"),
])
def test_bad_validation_rules_are_named(path, value, message):
    with pytest.raises(ParametersError, match=message):
        parse_parameters(changed(path, value))


def test_a_ks_threshold_must_be_below_one():
    document = changed(["validation", "shift", "statistic"], "ks")
    document["validation"]["shift"]["threshold"] = 1.0
    with pytest.raises(ParametersError, match="validation.shift.threshold"):
        parse_parameters(document)


def test_monitoring_defaults_collect_everything_and_drift_by_the_validation_rule():
    document = changed(["monitoring"], KeyError)
    document["validation"]["shift"]["threshold"] = 0.4
    monitoring = parse_parameters(document).monitoring
    assert (monitoring.sample_rate, monitoring.shift.threshold) == (1.0, 0.4)
    document["monitoring"] = {"shift": {"statistic": "ks", "threshold": 0.2}}
    assert parse_parameters(document).monitoring.shift.statistic == "ks"


@pytest.mark.parametrize("path, value, message", [
    (["monitoring"], 1, "monitoring must be a JSON object"),
    (["monitoring", "sample"], 1, "monitoring has unknown key\\(s\\) sample"),
    (["monitoring", "sample_rate"], 0, "monitoring.sample_rate must be a number in \\(0, 1\\]"),
    (["monitoring", "sample_rate"], 1.5, "monitoring.sample_rate"),
    (["monitoring", "queue_size"], 0, "monitoring.queue_size must be a whole number >= 1"),
    (["monitoring", "max_mb_per_day"], -1, "monitoring.max_mb_per_day must be a number > 0"),
    (["monitoring", "shift"], {"bins": 1}, "monitoring.shift.bins must be a whole number"),
])
def test_bad_monitoring_settings_are_named(path, value, message):
    with pytest.raises(ParametersError, match=message):
        parse_parameters(changed(path, value))


def test_the_monitor_judges_windows_of_min_rows_or_more():
    assert load_parameters().monitoring.min_rows >= 1
    with pytest.raises(ParametersError, match="monitoring.min_rows must be a whole number"):
        parse_parameters(changed(["monitoring", "min_rows"], 0))
