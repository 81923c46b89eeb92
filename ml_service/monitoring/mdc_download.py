"""Fetch what SDK v2's data collector kept for the deployment that serves an online endpoint
(``--source mdc`` without ``--collected_dir``, on the azureml-v2 backend).

The deployment that takes the most of the endpoint's live traffic is the one whose requests
are judged, and its model is the version they are labelled with. Its collector writes JSON
lines to the workspace's default datastore under
``modelDataCollector/<endpoint>/<deployment>/<collection>/<yyyy>/<MM>/<dd>/<HH>/``; only the
window's days are listed (one prefix per day and collection), and each file is copied into a
folder laid out as mdc.py reads it. The folder is the caller's (the monitor's temporary one),
so an interrupted download leaves nothing behind for a later run to misread.
"""
import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator, List, Optional

from ml_service.monitoring.collected import CollectedDataError
from ml_service.monitoring.collector import MDC_INPUTS, MDC_OUTPUTS

LOGGER = logging.getLogger(__name__)
COLLECTOR_ROOT = "modelDataCollector"
# Past this many days a window is listed as a whole (mdc.py keeps the window's days).
MAX_DAY_PREFIXES = 62


@dataclass(frozen=True)
class Serving:
    """The deployment that takes most of an endpoint's live traffic, and its model version."""

    endpoint: str
    deployment: str
    model_version: int

    @property
    def folder(self) -> str:
        """The deployment's folder in the datastore."""
        return f"{COLLECTOR_ROOT}/{self.endpoint}/{self.deployment}"


def serving_deployment(client: Any, endpoint: str) -> Serving:
    """The deployment of ``endpoint`` with the largest live share, read through MLClient."""
    from azure.core.exceptions import ResourceNotFoundError

    from ml_service.backends.azureml_v2_online import live_deployment, model_version

    try:
        found = client.online_endpoints.get(endpoint)
    except ResourceNotFoundError:
        raise CollectedDataError(
            f"the workspace has no online endpoint {endpoint}: pass --service with the "
            "endpoint whose requests to judge (default: ONLINE_ENDPOINT_NAME)") from None
    name = live_deployment(found.traffic)
    if name is None:
        raise CollectedDataError(f"online endpoint {endpoint} sends no live traffic to any "
                                 "deployment: there are no requests to judge")
    deployment = client.online_deployments.get(name, endpoint)
    return Serving(endpoint, name, model_version(deployment.model))


def day_prefixes(folder: str, since: Optional[dt.date], until: Optional[dt.date],
                 today: dt.date) -> List[str]:
    """The prefixes to list for the window's days: one per day, or the whole folder when the
    window is open at its start or longer than MAX_DAY_PREFIXES days."""
    last = min(until or today, today)
    if since is None or (last - since).days >= MAX_DAY_PREFIXES:
        return [f"{folder}/"]
    days = (since + dt.timedelta(days=n) for n in range((last - since).days + 1))
    return [f"{folder}/{day:%Y/%m/%d}/" for day in days]


def local_path(destination: Path, folder: str, blob_name: str) -> Path:
    """Where a blob under ``folder`` goes in ``destination``; a name that would leave it is
    refused."""
    relative = PurePosixPath(blob_name[len(folder) + 1:])
    if relative.is_absolute() or not relative.parts or ".." in relative.parts:
        raise CollectedDataError(f"blob {blob_name!r} is not a file under {folder}/")
    return destination.joinpath(*relative.parts)


def collected_blobs(container: Any, serving: Serving, since: Optional[dt.date],
                    until: Optional[dt.date], today: dt.date) -> Iterator[str]:
    """The names of the window's JSON-lines files of both collections."""
    for collection in (MDC_INPUTS, MDC_OUTPUTS):
        for prefix in day_prefixes(f"{serving.folder}/{collection}", since, until, today):
            for blob in container.list_blobs(name_starts_with=prefix):
                if blob.name.endswith(".jsonl"):
                    yield blob.name


def download_collected(container: Any, serving: Serving, destination: Path,
                       since: Optional[dt.date] = None, until: Optional[dt.date] = None,
                       today: Optional[dt.date] = None) -> int:
    """Copy the window's files into ``destination`` (laid out as mdc.py reads a deployment's
    folder); the number of files. The storage's refusal names the container and the role to
    grant."""
    from azure.core.exceptions import HttpResponseError

    today = today or dt.datetime.now(dt.timezone.utc).date()
    count = 0
    try:
        for name in collected_blobs(container, serving, since, until, today):
            target = local_path(destination, serving.folder, name)
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as file:
                container.download_blob(name).readinto(file)
            count += 1
    except HttpResponseError as err:
        raise CollectedDataError(
            f"the datastore's container {container.container_name} on "
            f"{container.account_name} refused to list or read {serving.folder}/ "
            f"({' '.join(str(err.message or err.reason).split())}): the identity running the "
            "monitor needs the role Storage Blob Data Reader on the workspace's storage "
            "account") from err
    (destination / MDC_INPUTS).mkdir(parents=True, exist_ok=True)
    LOGGER.info("Downloaded %d file(s) of %s/ from %s/%s", count, serving.folder,
                container.account_name, container.container_name)
    return count


def default_container(client: Any, credential: Any,
                      make_container: Optional[Callable[..., Any]] = None) -> Any:
    """A ContainerClient on the workspace's default datastore, signed in as ``credential``."""
    if make_container is None:
        from azure.storage.blob import ContainerClient as make_container
    store = client.datastores.get_default()
    account_url = f"{store.protocol}://{store.account_name}.blob.{store.endpoint}"
    return make_container(account_url=account_url, container_name=store.container_name,
                          credential=credential)
