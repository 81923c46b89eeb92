"""Publish the batch scoring pipeline on Azure ML, versioned by the build id.

    MLOPS_BACKEND=azureml BUILD_BUILDID=42 \\
        python -m ml_service.pipelines.diabetes_regression_build_parallel_batchscore_pipeline

Two steps:

1. ``batchscore``: a ParallelRunStep running ``diabetes_regression/scoring/
   parallel_batchscore.py`` on mini-batches of the scoring input (a tabular dataset
   read from SCORING_DATASTORE_INPUT_PATH on the datastore), on ``node_count`` nodes of
   the compute cluster; ``append_row`` gathers the rows ``run()`` returns into one file.
2. ``batchscore-copy-output``: ``diabetes_regression/scoring/batchscore_copy_output.py``
   writes that file as a CSV with a header to SCORING_DATASTORE_OUTPUT_PATH /
   SCORING_OUTPUT_FILE_NAME.

Both steps run in the batch scoring environment (BatchScoringSettings.conda_file,
``diabetes_regression/batchscore_conda_dependencies.yml``), not the training one: a
ParallelRunStep with a tabular input needs azureml-dataset-runtime[fuse,pandas] on the
compute (fuse also mounts the copy step's input), which requires pandas < 2, while the
project pins pandas 3. Pipeline parameters: ``model_name``, ``model_version`` (a number or
``production``) and ``node_count``. The graph is built by a pure function
(build_batchscore_pipeline) that a test builds offline; main() holds the service calls.
Locally there is nothing to publish: ``ml_service.pipelines.run_parallel_batchscore_pipeline``
scores a CSV file with the same script across the machine's cores.
"""
import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

from azureml.core import Environment, Workspace
from azureml.core.compute import ComputeTarget
from azureml.data import FileDataset, OutputFileDatasetConfig, TabularDataset
from azureml.data.abstract_datastore import AbstractDatastore
from azureml.pipeline.core import Pipeline, PipelineParameter
from azureml.pipeline.steps import ParallelRunConfig, ParallelRunStep, PythonScriptStep

from diabetes_regression.scoring.batchscore_copy_output import APPEND_ROW_FILE_NAME
from diabetes_regression.scoring.parallel_batchscore import PRODUCTION
from ml_service.errors import ConfigurationError
from ml_service.paths import PROJECT_ROOT
from ml_service.pipelines.azureml_pipeline import build_run_configuration
from ml_service.util.cli import run_cli
from ml_service.util.dataprep_types import DATAPREP
from ml_service.util.env_variables import (AzureScoringSettings, BackendSettings,
                                           BatchScoringSettings, ComputeSettings,
                                           EnvironmentSettings,
                                           TrainingSettings, WorkspaceSettings,
                                           load_dotenv_file)

LOGGER = logging.getLogger(__name__)
DESCRIPTION = "Batch scoring pipeline"
ENTRY_SCRIPT = "diabetes_regression/scoring/parallel_batchscore.py"
COPY_SCRIPT = "diabetes_regression/scoring/batchscore_copy_output.py"
# ParallelRunStep names: lowercase letters, digits and dashes, 3 to 32 characters.
BATCH_STEP_NAME = "batchscore"
COPY_STEP_NAME = "batchscore-copy-output"
SCORING_INPUT = "scoring_input"
SCORING_INPUT_FILE = "scoring_input_file"
SCORED_ROWS = "scored_rows"
SCORING_OUTPUT = "scoring_output"

# An AmlCompute object, or the cluster's name (no service look-up while the graph is built).
ComputeSpec = Union[ComputeTarget, str]


def pipeline_parameters(settings: BatchScoringSettings,
                        model_name: str) -> Dict[str, PipelineParameter]:
    """The parameters a run may change: the model, its version, and the node count."""
    return {"model_name": PipelineParameter("model_name", default_value=model_name),
            "model_version": PipelineParameter("model_version", default_value=PRODUCTION),
            "node_count": PipelineParameter("node_count", default_value=settings.node_count)}


def build_batchscore_pipeline(workspace: Workspace, compute_target: ComputeSpec,
                              environment: Environment, scoring_input: TabularDataset,
                              scoring_input_file: FileDataset,
                              output_datastore: AbstractDatastore,
                              settings: BatchScoringSettings, model_name: str,
                              source_directory: Path = PROJECT_ROOT,
                              default_datastore: Optional[AbstractDatastore] = None,
                              workflow_provider: Optional[Any] = None) -> Pipeline:
    """The batch scoring Pipeline: ParallelRunStep, then the copy step; no service call.

    ``scoring_input`` (tabular) is what the ParallelRunStep splits into mini-batches;
    ``scoring_input_file`` is the same CSV as a file dataset, whose header the copy step
    reads. Both must be saved datasets (Pipeline() saves unsaved ones, a service call).
    """
    parameters = pipeline_parameters(settings, model_name)
    # No reuse: "production" names a different model after every registration.
    config = ParallelRunConfig(
        environment=environment, entry_script=ENTRY_SCRIPT,
        source_directory=str(source_directory), mini_batch_size=settings.mini_batch_size,
        error_threshold=settings.error_threshold, output_action="append_row",
        append_row_file_name=APPEND_ROW_FILE_NAME, compute_target=compute_target,
        node_count=parameters["node_count"],
        process_count_per_node=settings.process_count_per_node,
        run_invocation_timeout=settings.run_invocation_timeout)
    scored_rows = OutputFileDatasetConfig(name=SCORED_ROWS)
    batch_step = ParallelRunStep(
        name=BATCH_STEP_NAME, parallel_run_config=config,
        inputs=[scoring_input.as_named_input(SCORING_INPUT)], output=scored_rows,
        arguments=["--model_name", parameters["model_name"],
                   "--model_version", parameters["model_version"],
                   # Mini-batches are read by azureml-dataprep, which learns column types.
                   "--input_types", DATAPREP],
        allow_reuse=False)
    scoring_output = OutputFileDatasetConfig(
        name=SCORING_OUTPUT, destination=(output_datastore, settings.output_path),
    ).as_upload(overwrite=True)
    copy_step = PythonScriptStep(
        name=COPY_STEP_NAME, script_name=COPY_SCRIPT, source_directory=str(source_directory),
        arguments=["--scored_rows", scored_rows.as_input(SCORED_ROWS),
                   "--scoring_input",
                   scoring_input_file.as_named_input(SCORING_INPUT_FILE).as_mount(),
                   "--output_dir", scoring_output,
                   "--output_file_name", settings.output_file_name,
                   "--append_row_file_name", APPEND_ROW_FILE_NAME],
        # The (name, type) form: a plain name would make PythonScriptStep look it up.
        compute_target=(compute_target, "AmlCompute") if isinstance(compute_target, str)
        else compute_target,
        runconfig=build_run_configuration(environment), allow_reuse=False)
    options: Dict[str, Any] = {}
    if workflow_provider is not None:
        options["_workflow_provider"] = workflow_provider
    return Pipeline(workspace=workspace, steps=[batch_step, copy_step],
                    default_datastore=default_datastore, **options)


# -- service calls (need a workspace; not tested here) ------------------------------
def get_datastore(workspace: Workspace, scoring: AzureScoringSettings) -> AbstractDatastore:
    """DATASTORE_NAME's datastore, or the workspace's default one."""
    from azureml.core import Datastore

    if scoring.datastore_name:
        return Datastore.get(workspace, scoring.datastore_name)
    return workspace.get_default_datastore()


def scoring_datasets(datastore: AbstractDatastore,
                     input_path: str) -> Tuple[TabularDataset, FileDataset]:
    """The scoring input CSV as a tabular dataset (column types inferred by the service)
    and as a file dataset."""
    from azureml.core import Dataset

    path = [(datastore, input_path)]
    return Dataset.Tabular.from_delimited_files(path=path), Dataset.File.from_files(path=path)


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    """Parse the version to publish under."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", help="version to publish under (default: BUILD_BUILDID)")
    return parser.parse_args(argv)


def build_and_publish(args: argparse.Namespace) -> int:
    """Get the compute, environment and datasets, build, validate and publish; print the id."""
    load_dotenv_file()
    training = TrainingSettings.from_env()
    settings = BatchScoringSettings.from_env()
    version = training.build_version(args.version, "it is the version the pipeline is "
                                                   "published under")
    if BackendSettings.from_env().kind != "azureml":
        raise ConfigurationError(
            "the batch scoring pipeline is an Azure ML pipeline: set MLOPS_BACKEND=azureml "
            "to publish it; to score a CSV file on this machine run "
            "python -m ml_service.pipelines.run_parallel_batchscore_pipeline --input FILE")
    from ml_service.util.attach_compute import get_or_create_compute
    from ml_service.util.manage_environment import get_environment
    from ml_service.util.workspace import get_workspace

    workspace = get_workspace(WorkspaceSettings.from_env())
    compute = get_or_create_compute(workspace, ComputeSettings.from_env())
    rebuild = EnvironmentSettings.from_env().rebuild
    environment = get_environment(workspace, settings.environment_settings(rebuild))
    datastore = get_datastore(workspace, AzureScoringSettings.from_env())
    scoring_input, scoring_input_file = scoring_datasets(datastore, settings.input_path)
    pipeline = build_batchscore_pipeline(workspace, compute, environment, scoring_input,
                                         scoring_input_file, datastore, settings,
                                         training.model_name)
    problems = pipeline.validate()
    if problems:
        raise ConfigurationError(f"Azure ML refuses pipeline {settings.pipeline_name!r}: "
                                 f"{problems}")
    published = pipeline.publish(name=settings.pipeline_name, description=DESCRIPTION,
                                 version=str(version))
    LOGGER.info("Published %s version %s: id %s", published.name, published.version,
                published.id)
    print(published.id)
    return 0


def main(argv: Optional[list] = None) -> int:
    """Entry point of the build script."""
    args = parse_args(argv)
    return run_cli(lambda: build_and_publish(args))


if __name__ == "__main__":
    sys.exit(main())
