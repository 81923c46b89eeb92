"""Pure registration helpers: the tags a registered model carries."""
from typing import Dict, Iterable, Mapping, Optional

from diabetes_regression.evaluate.evaluation import metric_value


def build_model_tags(*, run_id: str, experiment_name: str, dataset_name: Optional[str],
                     dataset_version: Optional[str], metrics: Mapping[str, float],
                     metric_tags: Iterable[str], build_id: Optional[str] = None,
                     build_uri: Optional[str] = None) -> Dict[str, str]:
    """Return the model's tags: its run, experiment, dataset, chosen metrics and build.

    Raises MetricMissingError when a metric listed in ``metric_tags`` was not logged.
    """
    tags = {"run_id": run_id, "experiment_name": experiment_name}
    if dataset_name:
        tags["dataset_name"] = dataset_name
    if dataset_version:
        tags["dataset_version"] = str(dataset_version)
    for name in metric_tags:
        tags[name] = repr(metric_value(metrics, name, "pipeline run"))
    if build_id:
        tags["BuildId"] = build_id
    if build_uri:
        tags["BuildUri"] = build_uri
    return tags
