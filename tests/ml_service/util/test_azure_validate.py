"""make azure-validate: every Azure ML object built and validated offline, one line each; a
broken definition fails it with the reason."""
from dataclasses import replace

import pytest

from ml_service.pipelines import diabetes_regression_pipeline
from ml_service.pipelines.diabetes_regression_pipeline import build_training_pipeline
from ml_service.util import azure_validate
from ml_service.util.env_variables import TrainingSettings

DEFINITION = build_training_pipeline(TrainingSettings())
SOUND = "reads 'validated_data' before any earlier step writes it"


def test_every_object_is_built_and_validated(capsys):
    assert azure_validate.main([]) == 0
    lines = capsys.readouterr().out.splitlines()
    labels = [check.label for check in azure_validate.checks(DEFINITION)]
    expected = [f"ok     {label}" for label in labels]
    assert [line.split(":")[0] for line in lines[:-1]] == expected
    assert {"v1 training steps", "v2 pipeline job", "v2 batch deployment"} <= set(labels)
    assert lines[-1] == (f"azure_validate: {len(labels)} of {len(labels)} Azure ML objects "
                         "built and validated offline")


def run_definition_checks(definition):
    """The checks that read the definition; the others do not change with it."""
    failed = []
    for check in azure_validate.checks(definition):
        if check.reads_definition:
            try:
                check.run()
            except Exception as err:  # what make azure-validate reports
                failed.append((check.label, str(err)))
    return dict(failed)


def test_a_step_reading_data_nobody_wrote_fails_each_translation():
    broken = replace(DEFINITION, steps=DEFINITION.steps[1:])
    failed = run_definition_checks(broken)
    assert set(failed) == {"pipeline definition", "v1 training steps",
                           "v2 pipeline component", "v2 pipeline job"}
    assert all(SOUND in reason or "no earlier step writes" in reason
               for reason in failed.values()), failed


def test_a_missing_script_is_named():
    step = replace(DEFINITION.steps[0], script="diabetes_regression/no_such_step.py")
    failed = run_definition_checks(replace(DEFINITION, steps=(step,) + DEFINITION.steps[1:]))
    assert "no_such_step.py" in failed["pipeline definition"]
    assert "no_such_step.py" in failed["v2 pipeline component"]


def test_make_azure_validate_exits_1_naming_the_reason(monkeypatch, capsys):
    broken = replace(DEFINITION, steps=DEFINITION.steps[1:])
    monkeypatch.setattr(diabetes_regression_pipeline, "build_training_pipeline",
                        lambda settings: broken)
    assert azure_validate.main([]) == 1
    out = capsys.readouterr().out
    assert f"FAILED pipeline definition: ConfigurationError: step 'Train Model' {SOUND}" in out
    assert "ok     v1 ACI deployment configuration" in out


def test_it_takes_no_options():
    with pytest.raises(SystemExit):
        azure_validate.main(["--nope"])
