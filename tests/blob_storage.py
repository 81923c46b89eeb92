"""Azure Blob Storage as the tests answer it: the real ContainerClient of azure-storage-blob
and azure-core's requests transport do their own work (paging, ranged downloads, parsing);
only the HTTP exchange of List Blobs and Get Blob is answered here, in the REST API's shape,
through requests' own response building."""
import urllib.parse
from email.utils import formatdate
from typing import Dict
from xml.sax.saxutils import escape

import requests
from azure.storage.blob import ContainerClient

from tests.log_analytics import SignedIn, respond, transport_over

ACCOUNT, CONTAINER = "stmlopsws", "azureml-blobstore-0000"
MODIFIED = formatdate(1796292000, usegmt=True)


class BlobService(requests.adapters.HTTPAdapter):
    """One container's blobs (name -> bytes). Listing answers ``page`` names at a time with a
    NextMarker; a status other than 200 refuses every request as the service does. Keeps the
    requests."""

    def __init__(self, blobs: Dict[str, bytes], page: int = 2, status: int = 200) -> None:
        super().__init__()
        self.blobs, self.page, self.status, self.seen = dict(blobs), page, status, []
        self.credentials = []

    def answer(self, request, status, body: bytes, headers):
        return respond(self, request, status, body, {"x-ms-version": "2025-01-05", **headers})

    def send(self, request, **kwargs):
        self.seen.append(request)
        url = urllib.parse.urlsplit(request.url)
        query = dict(urllib.parse.parse_qsl(url.query))
        if self.status != 200:
            error = (b'<?xml version="1.0" encoding="utf-8"?><Error><Code>'
                     b"AuthorizationPermissionMismatch</Code><Message>This request is not "
                     b"authorized to perform this operation using this permission.</Message>"
                     b"</Error>")
            return self.answer(request, self.status, error, {
                "Content-Type": "application/xml",
                "x-ms-error-code": "AuthorizationPermissionMismatch"})
        assert url.netloc == f"{ACCOUNT}.blob.core.windows.net"
        container, _, name = urllib.parse.unquote(url.path).lstrip("/").partition("/")
        assert container == CONTAINER
        if query.get("comp") == "list":
            return self.answer(request, 200, self.listing(query),
                               {"Content-Type": "application/xml"})
        return self.download(request, name)

    def listing(self, query) -> bytes:
        prefix, marker = query.get("prefix", ""), query.get("marker", "")
        names = sorted(n for n in self.blobs if n.startswith(prefix) and n > marker)
        shown, rest = names[:self.page], names[self.page:]
        blobs = "".join(
            f"<Blob><Name>{escape(n)}</Name><Properties><Last-Modified>{MODIFIED}"
            f"</Last-Modified><Etag>0x8DD0000000000{len(n)}</Etag><Content-Length>"
            f"{len(self.blobs[n])}</Content-Length><Content-Type>application/octet-stream"
            f"</Content-Type><BlobType>BlockBlob</BlobType></Properties></Blob>"
            for n in shown)
        next_marker = escape(shown[-1]) if rest else ""
        return (f'<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint='
                f'"https://{ACCOUNT}.blob.core.windows.net/" ContainerName="{CONTAINER}">'
                f"<Prefix>{escape(prefix)}</Prefix><Blobs>{blobs}</Blobs>"
                f"<NextMarker>{next_marker}</NextMarker></EnumerationResults>").encode()

    def download(self, request, name: str):
        assert request.method == "GET" and name in self.blobs, name
        body = self.blobs[name]
        first, last = 0, len(body) - 1
        wanted = request.headers.get("x-ms-range")
        if wanted:
            start, _, end = wanted.split("=")[1].partition("-")
            first, last = int(start), min(int(end), len(body) - 1)
        return self.answer(request, 206 if wanted else 200, body[first:last + 1], {
            "Content-Type": "application/octet-stream", "ETag": '"0x8DD00000000001"',
            "Last-Modified": MODIFIED, "x-ms-blob-type": "BlockBlob",
            "Content-Range": f"bytes {first}-{last}/{len(body)}"})


def container_maker(service: BlobService):
    """What mdc_download.default_container calls to make its ContainerClient: the real one,
    signed in as the Azure CLI's credential would be, over this service."""
    def make(account_url, container_name, credential):
        service.credentials.append(credential)
        return ContainerClient(account_url=account_url, container_name=container_name,
                               credential=SignedIn(), transport=transport_over(service))
    return make
